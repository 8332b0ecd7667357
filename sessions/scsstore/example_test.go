package scsstore_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"

	"github.com/alexedwards/scs/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/sessions/scsstore"
)

// scs.SessionManager with its sessions in a NATS KV bucket.
func Example() {
	dir, _ := os.MkdirTemp("", "scsstore-example")
	defer os.RemoveAll(dir)
	srv, err := natsembed.Start(natsembed.Config{Listen: "127.0.0.1:-1", StoreDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	nc, _ := nats.Connect(srv.ClientURL())
	defer nc.Close()
	js, _ := jetstream.New(nc)

	store, err := scsstore.New(js, scsstore.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	sm := scs.New()
	sm.Store = store
	sm.HashTokenInStore = true

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		n := sm.GetInt(r.Context(), "visits") + 1
		sm.Put(r.Context(), "visits", n)
		fmt.Fprintf(w, "visit %d", n)
	})
	web := httptest.NewServer(sm.LoadAndSave(mux))
	defer web.Close()

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	for range 3 {
		resp, err := browser.Get(web.URL)
		if err != nil {
			fmt.Println(err)
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(string(b))
	}
	// Output:
	// visit 1
	// visit 2
	// visit 3
}
