package healthz_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/healthz"
	"github.com/jetfleet/jetfleet/internal/logtest"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// drainServer is a node run by Health.Serve: health routes, a /hello
// handler and a /slow handler that runs until released.
type drainServer struct {
	h       *healthz.Health
	srv     *http.Server
	base    string
	entered chan struct{}    // one value per /slow request that started
	release chan struct{}    // closing it lets /slow requests finish
	ln      *net.TCPListener // the listener Serve runs on
	served  chan error       // Serve's result
	logs    *logtest.Recorder
}

func startDrainServer(t *testing.T, ctx context.Context, h *healthz.Health, opts healthz.DrainOptions) *drainServer {
	t.Helper()
	d := &drainServer{h: h, entered: make(chan struct{}, 1), release: make(chan struct{}), served: make(chan error, 1)}
	t.Cleanup(func() {
		d.unblock()
		d.srv.Close()
	})
	mux := http.NewServeMux()
	h.Routes(mux)
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello")) })
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		d.entered <- struct{}{}
		<-d.release
		w.Write([]byte("done"))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	d.ln, d.base, d.srv = ln.(*net.TCPListener), "http://"+ln.Addr().String(), &http.Server{Handler: h.Track(mux)}
	var log zerolog.Logger
	log, d.logs = logtest.New()
	opts.Logger = log.Output(zerolog.MultiLevelWriter(zerolog.NewTestWriter(t), d.logs))
	go func() { d.served <- h.Serve(ctx, d.srv, ln, opts) }()
	return d
}

// waitLog waits for the drain's log line whose message starts with prefix.
func (d *drainServer) waitLog(t *testing.T, prefix string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, e := range d.logs.Entries() {
			if strings.HasPrefix(e.Str("message"), prefix) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line %q within 10s", prefix)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *drainServer) unblock() {
	select {
	case <-d.release:
	default:
		close(d.release)
	}
}

// slow starts a /slow request and waits until its handler runs.
func (d *drainServer) slow(t *testing.T) chan response {
	t.Helper()
	done := make(chan response, 1)
	go func() {
		resp, err := http.Get(d.base + "/slow")
		if err != nil {
			done <- response{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			body = append(body, err.Error()...)
		}
		done <- response{code: resp.StatusCode, body: string(body)}
	}()
	select {
	case <-d.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request did not reach its handler")
	}
	return done
}

func TestServeDrainsGracefully(t *testing.T) {
	ns := natstest.Start(t)
	nc, js := natstest.Connect(t, ns.ClientURL())
	h := healthz.New(healthz.Config{}, healthz.Check{Name: "nats", Critical: true, Timeout: checkTimeout, Run: natsCheck(nc, js)})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	d := startDrainServer(t, ctx, h, healthz.DrainOptions{DrainDelay: 2 * time.Second, Grace: 30 * time.Second})
	shutdownBegan := make(chan struct{})
	d.srv.RegisterOnShutdown(func() { close(shutdownBegan) })
	waitFor(t, 5*time.Second, "the server answers", func() bool {
		resp, err := http.Get(d.base + "/livez")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	})
	if r := get(t, d.base+"/up", ""); r.code != 200 {
		t.Fatalf("GET /up before the signal = %d", r.code)
	}
	slow := d.slow(t)

	stop() // the SIGTERM
	waitFor(t, 2*time.Second, "/up says 503 draining", func() bool {
		r := get(t, d.base+"/up?format=json", "")
		return r.code == 503 && strings.Contains(r.body, `"status":"draining"`)
	})
	fresh := &http.Client{Transport: &http.Transport{}} // a new connection, asking for keep-alive
	req, _ := http.NewRequest(http.MethodGet, d.base+"/hello", nil)
	if r := do(t, fresh, req); r.code != 200 || r.body != "hello" || !r.close {
		t.Errorf("new request during the drain delay = %d %q (close %v), want 200 hello and Connection: close", r.code, r.body, r.close)
	}
	if r := get(t, d.base+"/livez", ""); r.code != 200 {
		t.Errorf("GET /livez while draining = %d, want 200", r.code)
	}

	select {
	case <-shutdownBegan:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not begin after the drain delay")
	}
	select {
	case err := <-d.served:
		t.Fatalf("Serve returned %v while a request was in flight", err)
	default:
	}
	d.unblock()
	if r := <-slow; r.code != 200 || r.body != "done" {
		t.Errorf("in-flight slow request = %d %q, want 200 done", r.code, r.body)
	}
	select {
	case err := <-d.served:
		if err != nil {
			t.Errorf("Serve = %v, want nil after a clean drain", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the last request")
	}
	// The listener itself, not its port (which another test may bind by now).
	d.ln.SetDeadline(time.Now().Add(time.Second))
	if c, err := d.ln.Accept(); !errors.Is(err, net.ErrClosed) {
		if c != nil {
			c.Close()
		}
		t.Errorf("Accept after Serve returned = %v, want net.ErrClosed: the listener is still open", err)
	}
	steps := d.logs.Entries()
	if len(steps) != 3 || steps[0]["in_flight"] != 1.0 || steps[0].Str("drain_delay") != "2s" ||
		steps[1]["in_flight"] != 1.0 || steps[1].Str("grace") != "30s" || steps[2].Str("message") != "healthz: drained" {
		t.Fatalf("drain logged %v, want its three steps", steps)
	}
	for _, s := range steps {
		if s.Str("level") != "info" {
			t.Errorf("drain step %q logged at %q, want info", s.Str("message"), s.Str("level"))
		}
	}
}

// TestServeKeepsIdleConnectionsUntilShutdown: a keep-alive connection that
// sat idle when the drain began is not closed under the balancer's feet;
// its next request is served, with "Connection: close".
func TestServeKeepsIdleConnectionsUntilShutdown(t *testing.T) {
	h := healthz.New(healthz.Config{})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	d := startDrainServer(t, ctx, h, healthz.DrainOptions{DrainDelay: 2 * time.Second})
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	waitFor(t, 5*time.Second, "the server answers", func() bool {
		resp, err := client.Get(d.base + "/hello")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return err == nil
	})

	stop() // the SIGTERM
	// Serve has begun the drain and moved on to its delay: a close of idle
	// connections at the drain's start is behind us. Had the connection
	// been closed, the transport would not reuse it (or would retry the
	// GET on a new one), and GotConn would say so.
	d.waitLog(t, "healthz: draining")
	var reused bool
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, d.base+"/hello", nil)
	r := do(t, client, req)
	if !reused {
		t.Error("the idle keep-alive connection was closed when the drain began")
	}
	if r.code != 200 || r.body != "hello" || !r.close {
		t.Errorf("request on the idle connection during the drain = %d %q (close %v), want 200 hello and Connection: close", r.code, r.body, r.close)
	}
}

func TestServeGivesUpAfterGrace(t *testing.T) {
	t.Parallel()
	h := healthz.New(healthz.Config{})
	ctx, stop := context.WithCancel(context.Background())
	d := startDrainServer(t, ctx, h, healthz.DrainOptions{DrainDelay: -1, Grace: 200 * time.Millisecond})
	slow := d.slow(t)
	stop()
	select {
	case err := <-d.served:
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "grace of 200ms ran out with 1 request(s) in flight") {
			t.Errorf("Serve = %v, want the grace deadline with 1 request in flight", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its grace")
	}
	d.unblock()
	if r := <-slow; r.code == 200 {
		t.Errorf("request cut by the grace deadline = %d %q, want its connection closed", r.code, r.body)
	}
}

func TestServeReportsAListenerFailure(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ln.Close()
	h := healthz.New(healthz.Config{})
	err = h.Serve(context.Background(), &http.Server{}, ln, healthz.DrainOptions{})
	if err == nil || !strings.HasPrefix(err.Error(), "healthz: serve: ") || !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve on a closed listener = %v, want a wrapped net.ErrClosed", err)
	}
}
