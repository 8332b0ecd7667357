package node_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/node"
)

// A handler behind the Idempotency middleware runs once per key: the
// client's repeat, sent because it never saw the first answer, gets that
// answer again.
func ExampleIdempotency() {
	dir, _ := os.MkdirTemp("", "example-idempotency")
	defer os.RemoveAll(dir)
	srv, err := natsembed.Start(natsembed.Config{StoreDir: dir}) // a NATS server for the example
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	nc, _ := nats.Connect(srv.ClientURL())
	defer nc.Close()
	js, _ := jetstream.New(nc)

	idem, err := node.NewIdempotency(context.Background(), js, node.IdempotencyConfig{ScopeCookie: "session"})
	if err != nil {
		fmt.Println(err)
		return
	}
	orders := 0
	web := httptest.NewServer(idem.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		orders++
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, "order %d", orders)
	})))
	defer web.Close()

	for range 2 {
		req, _ := http.NewRequest("POST", web.URL+"/orders", strings.NewReader(`{"book":42}`))
		req.Header.Set("Idempotency-Key", "0b6f7c52-0f5e-4d1e-8a33-9d1c2e7b4a10")
		req.Header.Set("Authorization", "Bearer ann") // keys are kept per session or credentials
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, string(body), "replayed:", resp.Header.Get("Idempotent-Replayed") == "true")
	}
	fmt.Println("orders made:", orders)
	// Output:
	// 201 order 1 replayed: false
	// 201 order 1 replayed: true
	// orders made: 1
}
