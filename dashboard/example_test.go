package dashboard_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/dashboard"
	"github.com/jetfleet/jetfleet/internal/natsembed"
)

// Mount the dashboard on a web node's mux, for operators holding the token.
func ExampleDashboard_Routes() {
	store, _ := os.MkdirTemp("", "jetfleet-example-")
	defer os.RemoveAll(store)
	srv, err := natsembed.Start(natsembed.Config{Listen: "127.0.0.1:-1", StoreDir: store})
	if err != nil {
		log.Fatal(err)
	}
	defer srv.Shutdown()
	nc, _ := nats.Connect(srv.ClientURL())
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := bus.ProvisionQueues(context.Background(), js, bus.Config{}, "default"); err != nil {
		log.Fatal(err)
	}

	dash, err := dashboard.New(js, dashboard.Config{Token: "operator-token-0123456789"}) // or dashboard.ConfigFromEnv(os.Getenv)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	dash.Routes(mux)
	web := httptest.NewServer(mux)
	defer web.Close()

	for _, auth := range []string{"", "Bearer wrong", "Bearer operator-token-0123456789"} {
		req, _ := http.NewRequest("GET", web.URL+"/jetfleet", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Printf("%q: %d\n", auth, resp.StatusCode)
	}
	// Output:
	// "": 401
	// "Bearer wrong": 401
	// "Bearer operator-token-0123456789": 200
}
