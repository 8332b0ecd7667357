package sessions_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/sessions"
)

// env is one real NATS server with a session manager on it.
type env struct {
	t     testing.TB
	srv   *natsembed.Server
	url   string
	js    jetstream.JetStream
	sm    *sessions.Manager
	clock *fakeClock
	cfg   sessions.Config
}

// newEnv starts a server and a manager whose clock the test controls.
func newEnv(t testing.TB, cfg sessions.Config, opts ...natstest.Options) *env {
	t.Helper()
	srv := natstest.Start(t, opts...)
	e := &env{t: t, srv: srv, url: srv.ClientURL(), clock: newFakeClock()}
	_, e.js = natstest.Connect(t, e.url)
	if cfg.Now == nil {
		cfg.Now = e.clock.Now
	}
	e.cfg = cfg
	e.sm = e.manager(e.js)
	return e
}

// manager is another node: a manager on its own JetStream handle.
func (e *env) manager(js jetstream.JetStream) *sessions.Manager {
	e.t.Helper()
	sm, err := sessions.New(js, e.cfg)
	if err != nil {
		e.t.Fatalf("sessions.New: %v", err)
	}
	return sm
}

// node connects a second client to the same server, as another web node.
func (e *env) node() *sessions.Manager {
	_, js := natstest.Connect(e.t, e.url)
	return e.manager(js)
}

func (e *env) kv() jetstream.KeyValue { return bucketOf(e.t, e.js, "sessions") }

func bucketOf(t testing.TB, js jetstream.JetStream, name string) jetstream.KeyValue {
	t.Helper()
	kv, err := js.KeyValue(context.Background(), name)
	if err != nil {
		t.Fatalf("bucket %s: %v", name, err)
	}
	return kv
}

// lastSeq is the bucket stream's last sequence: it grows by one for every
// write (put, update or delete) the server accepted.
func (e *env) lastSeq() uint64 {
	e.t.Helper()
	st, err := e.js.Stream(context.Background(), "KV_sessions")
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.LastSeq
}

// keys lists the live keys in the bucket.
func (e *env) keys() []string {
	e.t.Helper()
	keys, err := e.kv().Keys(context.Background())
	if err != nil && err != jetstream.ErrNoKeysFound {
		e.t.Fatal(err)
	}
	return keys
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// client is a browser with the session cookie and its revision cookie.
type client struct {
	name  string
	token string
	rev   string // the revision cookie's value; "" when none
}

func newClient() *client { return &client{name: "jetfleet_session"} }

func (c *client) request(method, target string, body io.Reader) *http.Request {
	r := httptest.NewRequest(method, target, body)
	if c.token != "" {
		r.AddCookie(&http.Cookie{Name: c.name, Value: c.token})
	}
	if c.rev != "" {
		r.AddCookie(&http.Cookie{Name: c.name + "_rev", Value: c.rev})
	}
	return r
}

// do serves r and keeps the cookie the response sets, as a browser would.
func (c *client) do(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	c.keep(w)
	return w
}

// keep stores the cookies w sets, as a browser does with a response.
func (c *client) keep(w *httptest.ResponseRecorder) {
	for _, ck := range w.Result().Cookies() {
		switch ck.Name {
		case c.name:
			c.token = ck.Value
			if ck.MaxAge < 0 {
				c.token = ""
			}
		case c.name + "_rev":
			c.rev = ck.Value
			if ck.MaxAge < 0 {
				c.rev = ""
			}
		}
	}
}

// run sends a GET through sm's middleware to a handler that calls fn.
func (c *client) run(sm *sessions.Manager, fn func(ctx context.Context)) *httptest.ResponseRecorder {
	h := sm.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fn(r.Context())
		_, _ = io.WriteString(w, "ok")
	}))
	return c.do(h, c.request(http.MethodGet, "/", nil))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
