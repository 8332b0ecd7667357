package healthz_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/healthz"
	"github.com/jetfleet/jetfleet/internal/natsembed"
)

// A node with a critical NATS check and a replica check whose failure only
// degrades it, then the same node draining.
func Example() {
	dir, _ := os.MkdirTemp("", "healthz-example")
	defer os.RemoveAll(dir)
	ns, err := natsembed.Start(natsembed.Config{StoreDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ns.Shutdown()
	nc, _ := nats.Connect(ns.ClientURL())
	defer nc.Close()
	js, _ := jetstream.New(nc)
	gone, _ := net.Listen("tcp", "127.0.0.1:0")
	replica := gone.Addr().String()
	gone.Close() // the replica is down

	h := healthz.New(healthz.Config{},
		healthz.Check{Name: "nats", Critical: true, Run: func(ctx context.Context) error {
			if !nc.IsConnected() {
				return errors.New("not connected")
			}
			_, err := js.AccountInfo(ctx) // JetStream answers
			return err
		}},
		healthz.Check{Name: "db.replicas", Run: func(ctx context.Context) error {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", replica)
			if err != nil {
				return fmt.Errorf("replica-1 unreachable: %w", healthz.ErrDegraded)
			}
			return c.Close()
		}},
	)
	mux := http.NewServeMux()
	h.Routes(mux)
	srv := httptest.NewServer(h.Track(mux))
	defer srv.Close()

	show := func(path string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			fmt.Println(err)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("%s → %d\n%s", path, resp.StatusCode, body)
	}
	show("/readyz?verbose")
	h.Drain()
	show("/up?format=json")
	show("/livez")
	// Output:
	// /readyz?verbose → 200
	// [+]nats ok
	// [+]db.replicas degraded: replica-1 unreachable: degraded
	// readyz check passed
	// /up?format=json → 503
	// {"status":"draining","checks":{}}
	// /livez → 200
	// ok
}

// The serve loop of a web node: SIGTERM drains it (503 on /up for 5s,
// then up to 30s for in-flight requests); a second signal exits at once.
func ExampleHealth_Serve() {
	h := healthz.New(healthz.Config{} /* checks... */)
	mux := http.NewServeMux()
	h.Routes(mux) // outside the session middleware
	mux.Handle("/", http.NotFoundHandler())

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // restore default handling: a second signal kills the process
	}()
	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: h.Track(mux)}
	if err := h.Serve(ctx, srv, ln, healthz.DrainOptions{Logger: zerolog.New(os.Stderr)}); err != nil {
		log.Fatal(err)
	}
}
