package healthz_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/healthz"
)

// checkTimeout bounds the runs of checks that a test expects to answer:
// under -race on a loaded two-core machine a JetStream request can take
// longer than the 1s default, which would turn an expected 200 into a 503.
const checkTimeout = 30 * time.Second

// natsCheck is the check a node runs on NATS: connected, and JetStream
// answering.
func natsCheck(nc *nats.Conn, js jetstream.JetStream) func(context.Context) error {
	return func(ctx context.Context) error {
		if !nc.IsConnected() {
			return errors.New("nats: not connected (" + nc.Status().String() + ")")
		}
		_, err := js.AccountInfo(ctx)
		return err
	}
}

// bucketCheck checks that a KV bucket exists and answers.
func bucketCheck(js jetstream.JetStream, bucket string) func(context.Context) error {
	return func(ctx context.Context) error {
		_, err := js.KeyValue(ctx, bucket)
		return err
	}
}

// dialCheck checks that a TCP server accepts connections at addr, as a
// database check would.
func dialCheck(addr string) func(context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// closedAddr is a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	must(t, ln.Close())
	return addr
}

// counted counts the runs of fn.
func counted(n *atomic.Int64, fn func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		n.Add(1)
		return fn(ctx)
	}
}

// serve runs handler on a real loopback HTTP server for the test and
// returns its base URL.
func serve(t testing.TB, handler http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := &http.Server{Handler: handler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// healthServer serves h's routes and returns the base URL.
func healthServer(t testing.TB, h *healthz.Health) string {
	t.Helper()
	mux := http.NewServeMux()
	h.Routes(mux)
	return serve(t, h.Track(mux))
}

type response struct {
	code   int
	header http.Header
	body   string
	close  bool // the server closes the connection after this response
}

func get(t testing.TB, url, accept string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	must(t, err)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	return do(t, http.DefaultClient, req)
}

func do(t testing.TB, client *http.Client, req *http.Request) response {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	must(t, err)
	return response{resp.StatusCode, resp.Header, string(body), resp.Close}
}

func getReport(t testing.TB, url string) (int, healthz.Report) {
	t.Helper()
	r := get(t, url, "application/json")
	var rep healthz.Report
	if err := json.Unmarshal([]byte(r.body), &rep); err != nil {
		t.Fatalf("GET %s: body %q is not a JSON report: %v", url, r.body, err)
	}
	return r.code, rep
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func contains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
