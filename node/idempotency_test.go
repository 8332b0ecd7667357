package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/proctest"
	"github.com/jetfleet/jetfleet/node"
)

// idemServer serves h inside an Idempotency middleware of cfg on a real
// NATS server; js is that server's JetStream.
func idemServer(t *testing.T, js jetstream.JetStream, cfg node.IdempotencyConfig, h http.Handler) string {
	t.Helper()
	if js == nil {
		_, js = natstest.Connect(t, natstest.Start(t).ClientURL())
	}
	idem, err := node.NewIdempotency(context.Background(), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(idem.Middleware(h))
	t.Cleanup(srv.Close)
	return srv.URL
}

// reply is what a test request got.
type reply struct {
	status int
	header http.Header
	body   string
}

// post sends method url with body and the Idempotency-Key key (none when
// empty), plus extra header lines "Name: value"; without a Cookie or
// Authorization line among them it is signed in as ann
// (Authorization: Bearer ann), since keys are kept for someone.
func post(t *testing.T, method, url, key, body string, extra ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(extra, func(h string) bool {
		return strings.HasPrefix(h, "Cookie:") || strings.HasPrefix(h, "Authorization:")
	}) {
		req.Header.Set("Authorization", "Bearer ann")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	for _, h := range extra {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Add(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{resp.StatusCode, resp.Header, string(b)}
}

// orders is a handler that counts the orders it makes.
type orders struct{ n atomic.Int64 }

func (o *orders) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	n := o.n.Add(1)
	w.Header().Set("Location", fmt.Sprintf("/orders/%d", n))
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, "order %d for %s", n, b)
}

const key1 = "3f1b1c2e-6a57-4c61-9d38-52d1b6f0a001"

func TestIdempotencyReplaysTheFirstResponse(t *testing.T) {
	o := &orders{}
	url := idemServer(t, nil, node.IdempotencyConfig{}, o)
	first := post(t, "POST", url+"/orders", key1, "2 books")
	if first.status != 201 || first.body != "order 1 for 2 books" || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("first: %d %q %v", first.status, first.body, first.header)
	}
	again := post(t, "POST", url+"/orders", key1, "2 books")
	if again.status != 201 || again.body != first.body || again.header.Get("Location") != "/orders/1" ||
		again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("repeat: %d %q %v", again.status, again.body, again.header)
	}
	if n := o.n.Load(); n != 1 {
		t.Fatalf("the handler ran %d times for one key", n)
	}
	// Another key, no key, and a safe method all run.
	post(t, "POST", url+"/orders", "another-key-0001", "2 books")
	post(t, "POST", url+"/orders", "", "2 books")
	post(t, "POST", url+"/orders", "", "2 books")
	post(t, "GET", url+"/orders", key1, "")
	if n := o.n.Load(); n != 5 {
		t.Fatalf("handler ran %d times, want 5", n)
	}
}

func TestIdempotencyKeysAreScopedBySessionAndAuthorization(t *testing.T) {
	o := &orders{}
	url := idemServer(t, nil, node.IdempotencyConfig{ScopeCookie: "sid"}, o)
	post(t, "POST", url+"/orders", key1, "x", "Cookie: sid=ann")
	post(t, "POST", url+"/orders", key1, "x", "Cookie: sid=bob")
	post(t, "POST", url+"/orders", key1, "x", "Cookie: sid=ann; other=1")
	post(t, "POST", url+"/orders", key1, "x", "Authorization: Bearer carol")
	if n := o.n.Load(); n != 3 {
		t.Fatalf("handler ran %d times for ann, bob, ann again and carol; want 3", n)
	}
}

func TestIdempotencyRefusesAKeyReusedForAnotherRequest(t *testing.T) {
	o := &orders{}
	url := idemServer(t, nil, node.IdempotencyConfig{}, o)
	post(t, "POST", url+"/orders", key1, "2 books")
	for _, c := range []struct{ method, path, body, want string }{
		{"POST", "/orders", "3 books", "different request body"},
		{"POST", "/refunds", "2 books", "already used for POST /orders"},
		{"PUT", "/orders", "2 books", "already used for POST /orders"},
	} {
		got := post(t, c.method, url+c.path, key1, c.body)
		if got.status != http.StatusUnprocessableEntity || !strings.Contains(got.body, c.want) {
			t.Errorf("%s %s %q: %d %q, want 422 saying %q", c.method, c.path, c.body, got.status, got.body, c.want)
		}
	}
	if n := o.n.Load(); n != 1 {
		t.Fatalf("handler ran %d times", n)
	}
}

func TestIdempotencyRejectsMalformedKeys(t *testing.T) {
	o := &orders{}
	url := idemServer(t, nil, node.IdempotencyConfig{}, o)
	for _, c := range []struct {
		keys []string
		want string
	}{
		{[]string{"short"}, "5 characters long; want 8 to 255"},
		{[]string{strings.Repeat("k", 256)}, "256 characters long"},
		{[]string{"has space in it"}, `has ' ' at byte 3`},
		{[]string{"semi;colon-key"}, `has ';' at byte 4`},
		{[]string{"first-key-1", "second-key-2"}, "not several"},
		{[]string{"ключключключ"}, `has 'к' at byte 0`},
	} {
		req, _ := http.NewRequest("POST", url+"/orders", strings.NewReader("x"))
		req.Header.Set("Authorization", "Bearer ann")
		for _, k := range c.keys {
			req.Header.Add("Idempotency-Key", k)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), c.want) {
			t.Errorf("keys %q: %d %q, want 400 saying %q", c.keys, resp.StatusCode, b, c.want)
		}
	}
	if n := o.n.Load(); n != 0 {
		t.Fatalf("handler ran %d times for malformed keys", n)
	}
}

// blocking is a handler that, per request, says it started and waits for
// release before it makes its order.
type blocking struct {
	orders
	started chan struct{}
	release chan struct{}
}

func newBlocking() *blocking {
	return &blocking{started: make(chan struct{}, 10), release: make(chan struct{})}
}

func (b *blocking) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.started <- struct{}{}
	<-b.release
	b.orders.ServeHTTP(w, r)
}

// consumers is how many consumers the idempotency bucket's stream has: a
// repeat that waits watches its key with one.
func consumers(t *testing.T, js jetstream.JetStream) int {
	s, err := js.Stream(context.Background(), "KV_"+node.DefaultIdempotencyBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Consumers
}

func TestIdempotencyRepeatWaitsForTheFirstThenReplays(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t).ClientURL())
	b := newBlocking()
	url := idemServer(t, js, node.IdempotencyConfig{}, b)
	firstDone := make(chan reply, 1)
	go func() { firstDone <- post(t, "POST", url+"/orders", key1, "2 books") }()
	<-b.started
	secondDone := make(chan reply, 1)
	go func() { secondDone <- post(t, "POST", url+"/orders", key1, "2 books") }()
	proctest.Eventually(t, 10*time.Second, "the repeat watches the key", func() error {
		if n := consumers(t, js); n != 1 {
			return fmt.Errorf("%d consumers", n)
		}
		return nil
	})
	close(b.release)
	first, second := <-firstDone, <-secondDone
	if first.status != 201 || second.status != 201 || second.body != first.body || second.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("first %d %q, repeat %d %q %v", first.status, first.body, second.status, second.body, second.header)
	}
	if n := b.n.Load(); n != 1 {
		t.Fatalf("handler ran %d times", n)
	}
}

func TestIdempotencyRepeatGets409AfterWait(t *testing.T) {
	b := newBlocking()
	url := idemServer(t, nil, node.IdempotencyConfig{Wait: -1}, b)
	firstDone := make(chan reply, 1)
	go func() { firstDone <- post(t, "POST", url+"/orders", key1, "2 books") }()
	<-b.started
	got := post(t, "POST", url+"/orders", key1, "2 books")
	if got.status != http.StatusConflict || !strings.Contains(got.body, "still running") || got.header.Get("Retry-After") != "10" {
		t.Fatalf("repeat while the first runs: %d %q, want 409", got.status, got.body)
	}
	close(b.release)
	if first := <-firstDone; first.status != 201 {
		t.Fatalf("first: %d %q", first.status, first.body)
	}
	if got := post(t, "POST", url+"/orders", key1, "2 books"); got.status != 201 || got.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("repeat after the first: %d %q", got.status, got.body)
	}
}

func TestIdempotencyDoesNotStoreRetryableFailures(t *testing.T) {
	var calls atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			http.Error(w, "nats: server is disconnected", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	url := idemServer(t, nil, node.IdempotencyConfig{}, h)
	if got := post(t, "POST", url+"/x", key1, "a"); got.status != 503 {
		t.Fatalf("first: %d", got.status)
	}
	if got := post(t, "POST", url+"/x", key1, "a"); got.status != 202 || got.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("retry after a 503: %d %v, want the request run again", got.status, got.header)
	}
	if got := post(t, "POST", url+"/x", key1, "a"); got.status != 202 || got.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("third: %d %v, want the 202 replayed", got.status, got.header)
	}
}

func TestIdempotencyBoundsWhatItStores(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t).ClientURL())
	big := strings.Repeat("r", 5000)
	var calls atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Set-Cookie", "sid=new")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, big)
	})
	url := idemServer(t, js, node.IdempotencyConfig{MaxResponseBytes: 1000, MaxBytes: 1 << 20, TTL: time.Hour}, h)
	post(t, "POST", url+"/x", key1, "a")
	got := post(t, "POST", url+"/x", key1, "a")
	if got.status != 201 || got.body != "" || got.header.Get("Idempotent-Body-Omitted") != "5000" ||
		got.header.Get("Set-Cookie") != "sid=new" || got.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay of a response over the limit: %d %q %v", got.status, got.body, got.header)
	}
	kv, err := js.KeyValue(context.Background(), node.DefaultIdempotencyBucket)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config
	if cfg.MaxBytes != 1<<20 || cfg.MaxAge != time.Hour || cfg.MaxMsgSize <= 0 || cfg.MaxMsgSize > 1000+256<<10 || cfg.MaxMsgsPerSubject != 1 {
		t.Fatalf("bucket bounds: max bytes %d, max age %s, max value %d, history %d", cfg.MaxBytes, cfg.MaxAge, cfg.MaxMsgSize, cfg.MaxMsgsPerSubject)
	}
	// The bucket holds neither the key nor the response in the clear.
	for _, subj := range []string{"$KV." + node.DefaultIdempotencyBucket + ".>"} {
		msg, err := js.Stream(context.Background(), "KV_"+node.DefaultIdempotencyBucket)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := msg.GetLastMsgForSubject(context.Background(), subj)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw.Data, []byte("sid=new")) || strings.Contains(raw.Subject, key1) {
			t.Fatalf("stored in the clear: %s %q", raw.Subject, raw.Data)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times", n)
	}
}

func TestIdempotencyFingerprintsWhatTheHandlerRead(t *testing.T) {
	// The handler reads only the first bytes of an upload: the rest is
	// never read (the key must not make the node read what its handler
	// would not), so a repeat differing there is the same request to it;
	// one differing in what it read, or in its length, is not.
	var calls atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.CopyN(io.Discard, r.Body, 10)
		w.WriteHeader(http.StatusAccepted)
	})
	url := idemServer(t, nil, node.IdempotencyConfig{}, h)
	body := strings.Repeat("p", 3<<20)
	if got := post(t, "POST", url+"/upload", key1, body); got.status != 202 {
		t.Fatalf("first: %d", got.status)
	}
	if got := post(t, "POST", url+"/upload", key1, body[:len(body)-1]+"q"); got.status != 202 || got.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("the same upload but for a byte its handler never read: %d %q", got.status, got.body)
	}
	if got := post(t, "POST", url+"/upload", key1, "q"+body[1:]); got.status != 422 {
		t.Fatalf("an upload differing in its first byte: %d %q, want 422", got.status, got.body)
	}
	if got := post(t, "POST", url+"/upload", key1, body+"p"); got.status != 422 {
		t.Fatalf("an upload one byte longer: %d %q, want 422", got.status, got.body)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times", n)
	}
}

func TestIdempotencyConfigFromEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	cfg, on, err := node.IdempotencyConfigFromEnv(env("JETFLEET_IDEMPOTENCY_TTL", "1h", "JETFLEET_IDEMPOTENCY_LEASE", "5",
		"JETFLEET_IDEMPOTENCY_WAIT", "2s", "JETFLEET_IDEMPOTENCY_MAX_RESPONSE", "4096", "JETFLEET_IDEMPOTENCY_MAX_BYTES", "1000000"))
	if err != nil || !on || cfg.TTL != time.Hour || cfg.Lease != 5*time.Second || cfg.Wait != 2*time.Second ||
		cfg.MaxResponseBytes != 4096 || cfg.MaxBytes != 1000000 {
		t.Fatalf("got %+v on=%v err=%v", cfg, on, err)
	}
	if _, on, err := node.IdempotencyConfigFromEnv(env("JETFLEET_IDEMPOTENCY", "off")); on || err != nil {
		t.Fatalf("off: on=%v err=%v", on, err)
	}
	for _, bad := range [][]string{
		{"JETFLEET_IDEMPOTENCY", "maybe"}, {"JETFLEET_IDEMPOTENCY_TTL", "soon"},
		{"JETFLEET_IDEMPOTENCY_MAX_RESPONSE", "-1"}, {"JETFLEET_IDEMPOTENCY_LEASE", "0"},
	} {
		if _, _, err := node.IdempotencyConfigFromEnv(env(bad...)); err == nil || !strings.Contains(err.Error(), bad[0]) {
			t.Errorf("%s=%s: err %v, want one naming it", bad[0], bad[1], err)
		}
	}
}

// TestIdempotencyChildProcess is the web node that
// TestIdempotencyKeyOfAKilledNodeIsTakenOver kills: it runs only as that
// test's child process (IDEMTEST_NATS_URL set), serving a handler that
// takes the key, says so, and never finishes.
func TestIdempotencyChildProcess(t *testing.T) {
	url := os.Getenv("IDEMTEST_NATS_URL")
	if url == "" {
		t.Skip("runs only as the child process of TestIdempotencyKeyOfAKilledNodeIsTakenOver")
	}
	_, js := natstest.Connect(t, url)
	idem, err := node.NewIdempotency(context.Background(), js, node.IdempotencyConfig{Lease: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(os.Stderr, "listening on %s\n", ln.Addr())
	http.Serve(ln, idem.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		fmt.Fprintln(os.Stderr, "working on the order")
		select {} // killed before it makes the order
	})))
}

func TestIdempotencyKeyOfAKilledNodeIsTakenOver(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	child := proctest.Start(t, os.Args[0], t.TempDir(), proctest.Env("IDEMTEST_NATS_URL="+srv.ClientURL()),
		"-test.run=^TestIdempotencyChildProcess$", "-test.v")
	child.WaitFor(t, "listening on ", 30*time.Second)
	_, rest, _ := strings.Cut(child.Stderr.String(), "listening on ")
	addr, _, _ := strings.Cut(rest, "\n")

	firstErr := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest("POST", "http://"+addr+"/orders", strings.NewReader("2 books"))
		req.Header.Set("Idempotency-Key", key1)
		req.Header.Set("Authorization", "Bearer ann")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		firstErr <- err
	}()
	child.WaitFor(t, "working on the order", 30*time.Second)
	if err := child.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-child.Done
	if err := <-firstErr; err == nil {
		t.Fatal("the request to the killed node got a response")
	}

	// The client retries on another node with the same key: it waits for
	// the dead node's lease to lapse, then makes the order, once.
	o := &orders{}
	url := idemServer(t, js, node.IdempotencyConfig{}, o)
	got := post(t, "POST", url+"/orders", key1, "2 books")
	if got.status != 201 || got.body != "order 1 for 2 books" || got.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("retry after the kill: %d %q %v", got.status, got.body, got.header)
	}
	again := post(t, "POST", url+"/orders", key1, "2 books")
	if again.status != 201 || again.body != got.body || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("second retry: %d %q %v", again.status, again.body, again.header)
	}
	if n := o.n.Load(); n != 1 {
		t.Fatalf("the order was made %d times", n)
	}
}

// A web node serves its app's routes inside the middleware by default.
func TestServeReplaysKeyedRequests(t *testing.T) {
	var calls atomic.Int64
	app := node.App{Name: "keys", Routes: func(_ *node.Services, mux *http.ServeMux) {
		mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "order %d", calls.Add(1))
		})
	}}
	url := serveApp(t, app, node.ServeConfig{})
	first := post(t, "POST", url+"orders", key1, "x")
	again := post(t, "POST", url+"orders", key1, "x")
	if first.body != "order 1" || again.body != "order 1" || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("first %d %q, repeat %d %q %v", first.status, first.body, again.status, again.body, again.header)
	}
	if got := post(t, "POST", url+"orders", "bad key", "x"); got.status != 400 {
		t.Fatalf("bad key through the node: %d %q", got.status, got.body)
	}
}

// A handler that writes nothing answers 200: that is stored too.
func TestIdempotencyStoresAnImplicit200(t *testing.T) {
	var calls atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("X-Done", "yes")
	})
	url := idemServer(t, nil, node.IdempotencyConfig{}, h)
	post(t, "DELETE", url+"/items/7", key1, "")
	got := post(t, "DELETE", url+"/items/7", key1, "")
	if got.status != 200 || got.header.Get("X-Done") != "yes" || got.header.Get("Idempotent-Replayed") != "true" || calls.Load() != 1 {
		t.Fatalf("repeat: %d %v after %d calls", got.status, got.header, calls.Load())
	}
}

// The NATS server goes away while a keyed request runs and comes back a
// moment later: the middleware keeps trying to store the response, so a
// repeat is replayed rather than run again.
func TestIdempotencyStoresThroughANATSRestart(t *testing.T) {
	port := natstest.FreePorts(t, 1)[0]
	cfg := natsembed.Config{Listen: fmt.Sprintf("127.0.0.1:%d", port), StoreDir: t.TempDir()}
	srv, err := natsembed.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown() })
	// No reconnect buffer: a write while disconnected fails at once, as one
	// to a stream in an election does, instead of waiting in the buffer.
	nc, js := natstest.Connect(t, srv.ClientURL(), nats.ReconnectBufSize(-1))
	restarted := make(chan struct{})
	var calls atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			srv.Shutdown()
			for nc.IsConnected() {
				time.Sleep(10 * time.Millisecond)
			}
			go func() { // back after the handler has answered
				time.Sleep(300 * time.Millisecond)
				if srv, err = natsembed.Start(cfg); err != nil {
					panic(err)
				}
				close(restarted)
			}()
		}
		w.WriteHeader(http.StatusCreated)
	})
	url := idemServer(t, js, node.IdempotencyConfig{}, h)
	if got := post(t, "POST", url+"/orders", key1, "x"); got.status != 201 {
		t.Fatalf("first: %d %q", got.status, got.body)
	}
	<-restarted
	var got reply
	proctest.Eventually(t, 20*time.Second, "a repeat answered after the restart", func() error {
		if got = post(t, "POST", url+"/orders", key1, "x"); got.status == 503 {
			return fmt.Errorf("503 %s", got.body)
		}
		return nil
	})
	if got.status != 201 || got.header.Get("Idempotent-Replayed") != "true" || calls.Load() != 1 {
		t.Fatalf("repeat: %d %q %v after %d calls", got.status, got.body, got.header, calls.Load())
	}
}

// TestIdempotencyBucketOpensOnceTheClusterAnswers: a web node that starts
// while the cluster cannot answer for the bucket (two of three nodes down,
// as for a moment after `jetfleet up --replicas 3` made it, while its
// leader is elected) keeps asking instead of failing its start on the
// first unanswered request (a clean-clone CI run's fault-injection start
// failed so: "idempotency bucket jetfleet_idempotency: context deadline
// exceeded").
func TestIdempotencyBucketOpensOnceTheClusterAnswers(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	_, js := natstest.Connect(t, c.URLs())
	cfg := node.IdempotencyConfig{Replicas: 3}
	if _, err := node.NewIdempotency(context.Background(), js, cfg); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), "KV_"+node.DefaultIdempotencyBucket)
	if err != nil {
		t.Fatal(err)
	}
	// Keep one node that does not lead the bucket: with the leader and the
	// other node down, nothing answers for the bucket.
	keep := -1
	for i, n := range c.Nodes {
		if n.Name() != st.CachedInfo().Cluster.Leader {
			keep = i
		}
	}
	for i, n := range c.Nodes {
		if i != keep {
			n.Shutdown()
		}
	}
	_, js0 := natstest.Connect(t, c.Nodes[keep].ClientURL())
	opened := make(chan error, 1)
	began := time.Now()
	go func() {
		_, err := node.NewIdempotency(context.Background(), js0, cfg)
		opened <- err
	}()
	select {
	case err := <-opened:
		t.Fatalf("opened without a quorum after %s: %v", time.Since(began), err)
	case <-time.After(6 * time.Second): // past nats.go's 5 s request timeout
	}
	for i := range c.Nodes {
		if i != keep {
			c.Restart(t, i)
		}
	}
	select {
	case err := <-opened:
		if err != nil {
			t.Fatalf("after the nodes came back: %v", err)
		}
		t.Logf("opened %s after the start, with two of three nodes down for the first 6 s", time.Since(began).Round(100*time.Millisecond))
	case <-time.After(30 * time.Second):
		t.Fatal("not opened 30 s after the nodes came back")
	}
}

// A key in the IETF draft's form, a structured-field string ("..."), is
// the key without its quotes.
func TestIdempotencyTakesAQuotedKey(t *testing.T) {
	o := &orders{}
	url := idemServer(t, nil, node.IdempotencyConfig{}, o)
	post(t, "POST", url+"/orders", `"`+key1+`"`, "2 books")
	again := post(t, "POST", url+"/orders", key1, "2 books")
	if again.status != 201 || again.header.Get("Idempotent-Replayed") != "true" || o.n.Load() != 1 {
		t.Fatalf("the key quoted, then bare: %d %v, %d orders", again.status, again.header, o.n.Load())
	}
}

// Requests with neither the session cookie nor Authorization have nobody
// to keep a key for: two anonymous clients sending the same key must not
// get each other's response, nor fill the bucket. They run, unrecorded.
func TestIdempotencyServesAnonymousRequestsWithoutARecord(t *testing.T) {
	_, js := natstest.Connect(t, natstest.Start(t).ClientURL())
	o := &orders{}
	url := idemServer(t, js, node.IdempotencyConfig{ScopeCookie: "sid"}, o)
	first := post(t, "POST", url+"/orders", key1, "x", "Cookie: other=1")
	second := post(t, "POST", url+"/orders", key1, "x", "Cookie: other=2")
	if first.body != "order 1 for x" || second.body != "order 2 for x" || second.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("two anonymous clients with one key: %q, then %q %v", first.body, second.body, second.header)
	}
	kv, err := js.KeyValue(context.Background(), node.DefaultIdempotencyBucket)
	if err != nil {
		t.Fatal(err)
	}
	if keys, err := kv.ListKeys(context.Background()); err != nil {
		t.Fatal(err)
	} else {
		for k := range keys.Keys() {
			t.Errorf("an anonymous request left a record: %s", k)
		}
	}
}

// A 401 or a 419 (CSRF token expired) is answered before the request did
// anything, and says to try again: it is not stored.
func TestIdempotencyDoesNotStoreSignInAndCSRFRefusals(t *testing.T) {
	for _, status := range []int{http.StatusUnauthorized, 419} {
		var calls atomic.Int64
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if calls.Add(1) == 1 {
				w.WriteHeader(status)
				return
			}
			w.WriteHeader(http.StatusCreated)
		})
		url := idemServer(t, nil, node.IdempotencyConfig{}, h)
		post(t, "POST", url+"/x", key1, "a")
		if got := post(t, "POST", url+"/x", key1, "a"); got.status != 201 || got.header.Get("Idempotent-Replayed") != "" {
			t.Errorf("retry after a %d: %d %v, want the request run again", status, got.status, got.header)
		}
	}
}

// keyedBody sends a keyed POST to base+path whose body is the first
// bytes, then nothing (its Content-Length promises 3 MiB), and returns
// the status line the server answered with before the client sent any
// more, or "" after 3 s without one.
func keyedBody(t *testing.T, base, path, first string) string {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer ann\r\nIdempotency-Key: %s\r\nContent-Length: %d\r\n\r\n%s",
		path, key1, 3<<20, first)
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Logf("no answer: %v", err)
	}
	return strings.TrimSpace(line)
}

// A key must not make a node read what the handler refused: a 413 after
// the first bytes is answered at once (not after the middleware read the
// other 3 MiB the client promised, or waited for them), and its repeat is
// compared on those bytes only.
func TestIdempotencyReadsNoMoreOfARefusedBodyThanItsHandler(t *testing.T) {
	var calls atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		io.CopyN(io.Discard, r.Body, 10)
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	})
	base := idemServer(t, nil, node.IdempotencyConfig{}, h)
	const want = "HTTP/1.1 413 Request Entity Too Large"
	if got := keyedBody(t, base, "/upload", "0123456789"); got != want {
		t.Fatalf("first: %q, want %q without the rest of the body", got, want)
	}
	if got := keyedBody(t, base, "/upload", "0123456789"); got != want {
		t.Fatalf("repeat: %q, want the 413 replayed without the rest of the body", got)
	}
	if got := post(t, "POST", base+"/upload", key1, "01234567xx"); got.status != 422 {
		t.Fatalf("repeat differing in what the handler read: %d %q, want 422", got.status, got.body)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times", n)
	}
}

// multipartBody is an upload of one file as curl -F sends it: with a
// boundary of its own.
func multipartBody(t *testing.T, boundary, content string) (body, contentType string) {
	t.Helper()
	var b strings.Builder
	mw := multipart.NewWriter(&b)
	if err := mw.SetBoundary(boundary); err != nil {
		t.Fatal(err)
	}
	fw, err := mw.CreateFormFile("images", "lamp.png")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(fw, content)
	mw.Close()
	return b.String(), mw.FormDataContentType()
}

// Clients pick a new multipart boundary for every send, retries included:
// a retried upload is the same request, another file is not.
func TestIdempotencyReplaysAnUploadSentWithANewBoundary(t *testing.T) {
	var calls atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseMultipartForm(1 << 20); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, "upload %d", calls.Add(1))
	})
	url := idemServer(t, nil, node.IdempotencyConfig{}, h) + "/upload"
	send := func(boundary, content string) reply {
		body, ct := multipartBody(t, boundary, content)
		return post(t, "POST", url, key1, body, "Content-Type: "+ct, "Authorization: Bearer ann")
	}
	image := strings.Repeat("\x89PNG", 20000)
	if got := send("first-boundary-1a2b3c", image); got.status != 202 || got.body != "upload 1" {
		t.Fatalf("first: %d %q", got.status, got.body)
	}
	if got := send("------------------------retry7f9e8d7c6b5a4", image); got.status != 202 || got.body != "upload 1" || got.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("the same file with a new boundary: %d %q %v, want the first answer replayed", got.status, got.body, got.header)
	}
	if got := send("third-boundary-ffff", image[:len(image)-1]+"x"); got.status != 422 {
		t.Fatalf("another file: %d %q, want 422", got.status, got.body)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times", n)
	}
}

// A lease too short to renew is refused, from the environment and in
// code, rather than crashing the node on its first keyed request; so is
// one so long that the time the node gives its store overflows.
func TestIdempotencyRefusesALeaseTooShort(t *testing.T) {
	_, _, err := node.IdempotencyConfigFromEnv(func(k string) string {
		return map[string]string{"JETFLEET_IDEMPOTENCY_LEASE": "2ns"}[k]
	})
	if err == nil || !strings.Contains(err.Error(), "JETFLEET_IDEMPOTENCY_LEASE=2ns: want 300ms to 1h0m0s") {
		t.Fatalf("a 2ns lease from the environment: %v", err)
	}
	_, _, err = node.IdempotencyConfigFromEnv(func(k string) string {
		return map[string]string{"JETFLEET_IDEMPOTENCY_LEASE": "2000000h"}[k]
	})
	if err == nil || !strings.Contains(err.Error(), "want 300ms to 1h0m0s") {
		t.Fatalf("a lease of 228 years from the environment: %v", err)
	}
	_, js := natstest.Connect(t, natstest.Start(t).ClientURL())
	if _, err := node.NewIdempotency(context.Background(), js, node.IdempotencyConfig{Lease: 2}); err == nil || !strings.Contains(err.Error(), "want 300ms to 1h0m0s") {
		t.Fatalf("a 2ns lease in code: %v", err)
	}
}

// A JSON client reads the middleware's refusals where it reads the app's
// errors: {"error": "..."}.
func TestIdempotencyRefusesAJSONClientInJSON(t *testing.T) {
	url := idemServer(t, nil, node.IdempotencyConfig{}, &orders{})
	got := post(t, "POST", url+"/orders", "short", `{"book":1}`, "Content-Type: application/json")
	var e struct{ Error string }
	if err := json.Unmarshal([]byte(got.body), &e); got.status != 400 || err != nil || !strings.Contains(e.Error, "5 characters long") ||
		got.header.Get("Content-Type") != "application/json" {
		t.Fatalf("a malformed key from a JSON client: %d %q %v", got.status, got.body, got.header)
	}
	if got := post(t, "POST", url+"/orders", "short", "x"); got.status != 400 || !strings.HasPrefix(got.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("a malformed key from a form: %d %q %v", got.status, got.body, got.header)
	}
}

// A refused multipart request is fingerprinted by what its handler read,
// which may end inside a delimiter: the same bytes sent again replay the
// answer however they arrive. Content that looks like a boundary is not
// one unless it starts a line.
func TestIdempotencyMultipartEdges(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mr, err := r.MultipartReader()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		p, err := mr.NextPart()
		if err != nil || p.FormName() != "images" {
			http.Error(w, "unexpected field", http.StatusBadRequest)
			return
		}
		io.Copy(io.Discard, p)
		w.WriteHeader(http.StatusAccepted)
	})
	base := idemServer(t, nil, node.IdempotencyConfig{}, h)
	// Sent in two writes split inside the second delimiter.
	body, ct := multipartBody(t, "bnd", "abc")
	body = strings.Replace(body, `name="images"`, `name="photos"`, 1)
	split := strings.Index(body[10:], "--bnd") + 10 + 3
	send := func(parts ...string) string {
		conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /up HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ann\r\nIdempotency-Key: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", key1, ct, len(body))
		for _, p := range parts {
			io.WriteString(conn, p)
			time.Sleep(50 * time.Millisecond)
		}
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Status + " " + resp.Header.Get("Idempotent-Replayed")
	}
	if got := send(body[:split], body[split:]); got != "400 Bad Request " {
		t.Fatalf("first: %q", got)
	}
	for _, parts := range [][]string{{body}, {body[:split], body[split:]}} {
		if got := send(parts...); got != "400 Bad Request true" {
			t.Fatalf("the same bytes again in %d writes: %q, want the 400 replayed", len(parts), got)
		}
	}

	// With a one-letter boundary, file content holding "--a" or "--b"
	// mid-line is content.
	url2 := idemServer(t, nil, node.IdempotencyConfig{}, h) + "/upload"
	post2 := func(boundary, content string) reply {
		b, ct := multipartBody(t, boundary, content)
		return post(t, "POST", url2, "another-key-0002", b, "Content-Type: "+ct)
	}
	if got := post2("a", "xx--ayy"); got.status != 202 {
		t.Fatalf("first: %d %q", got.status, got.body)
	}
	if got := post2("b", "xx--ayy"); got.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("the same file with boundary b: %d %q, want replayed", got.status, got.body)
	}
	if got := post2("b", "xx--byy"); got.status != 422 {
		t.Errorf("another file (xx--byy) with boundary b: %d %q, want 422", got.status, got.body)
	}
}
