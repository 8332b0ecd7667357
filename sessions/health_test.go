package sessions_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetfleet/jetfleet/internal/logtest"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/node"
	"github.com/jetfleet/jetfleet/sessions"
)

func TestWhenNATSIsDownTheMiddlewareFailsClosed(t *testing.T) {
	// A reconnecting connection is waited for up to StoreTimeout: keep it short.
	e := newEnv(t, sessions.Config{StoreTimeout: 300 * time.Millisecond})
	e.cfg.FailOpen = true
	failOpen := e.manager(e.js)
	c := login(t, e)
	must(t, e.sm.Check(context.Background()))

	e.srv.Shutdown()

	if err := e.sm.Check(context.Background()); !errors.Is(err, sessions.ErrUnavailable) {
		t.Errorf("Check with NATS down = %v, want ErrUnavailable", err)
	}
	ran := false
	w := c.run(e.sm, func(context.Context) { ran = true })
	if ran || w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" ||
		!strings.Contains(w.Body.String(), "session store (NATS) did not answer in time") {
		t.Errorf("request with a session: handler ran=%v, %d %q, Retry-After %q; want 503 without running the handler",
			ran, w.Code, w.Body, w.Header().Get("Retry-After"))
	}
	anon := newClient()
	if w := anon.run(e.sm, func(context.Context) {}); w.Code != http.StatusOK {
		t.Errorf("request without session work = %d, want 200 (NATS not needed)", w.Code)
	}
	if w := anon.run(e.sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "k", 1)) }); w.Code != http.StatusServiceUnavailable || anon.token != "" {
		t.Errorf("request that creates a session = %d (cookie %q), want 503 and no cookie", w.Code, anon.token)
	}
	w = c.run(failOpen, func(ctx context.Context) {
		ran = true
		if err := sessions.Put(ctx, "k", 1); !errors.Is(err, sessions.ErrUnavailable) {
			t.Errorf("Put in a fail-open session = %v, want ErrUnavailable", err)
		}
	})
	if !ran || w.Code != http.StatusOK || len(w.Header().Values("Set-Cookie")) != 0 {
		t.Errorf("FailOpen: ran=%v status %d cookies %v, want the handler to run without a session", ran, w.Code, w.Header().Values("Set-Cookie"))
	}
}

// Without quorum the bucket takes no writes: a request that changes its
// session gets 503. A request that only reads is served from a copy that
// has the revision its client has seen (this node's, or the surviving
// replica's).
func TestWhenTheClusterLosesQuorumWritesGet503(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	cluster := natstest.StartCluster(t, 3)
	cfg := sessions.Config{Replicas: 3, StoreTimeout: 500 * time.Millisecond}
	_, admin := natstest.Connect(t, cluster.Nodes[0].ClientURL())
	_, err := sessions.New(admin, cfg)
	must(t, err)
	st, err := admin.Stream(context.Background(), "KV_sessions")
	must(t, err)
	info, err := st.Info(context.Background())
	must(t, err)
	survivor := 0
	for i, n := range cluster.Nodes {
		if n.Name() != info.Cluster.Leader {
			survivor = i
		}
	}
	var mu sync.Mutex
	var handled error
	cfg.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, err error) {
		mu.Lock()
		handled = err
		mu.Unlock()
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_, js := natstest.Connect(t, cluster.Nodes[survivor].ClientURL())
	sm, err := sessions.New(js, cfg)
	must(t, err)
	c := newClient()
	c.run(sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "k", 1)) })
	for i, n := range cluster.Nodes { // the stream leader and one follower go
		if i != survivor {
			n.Shutdown()
		}
	}
	if w := c.run(sm, func(ctx context.Context) {
		if n, _ := sessions.GetInt(ctx, "k"); n != 1 {
			t.Errorf("read without quorum: k = %d, want 1", n)
		}
	}); w.Code != http.StatusOK {
		t.Errorf("read without quorum: %d %s, want 200", w.Code, w.Body)
	}
	w := c.run(sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "k", 2)) })
	mu.Lock()
	defer mu.Unlock()
	if w.Code != http.StatusServiceUnavailable || !errors.Is(handled, sessions.ErrUnavailable) {
		t.Errorf("without quorum: %d, ErrorHandler got %v; want 503 and ErrUnavailable", w.Code, handled)
	}
	if err := sm.Check(context.Background()); !errors.Is(err, sessions.ErrUnavailable) {
		t.Errorf("Check without quorum = %v, want ErrUnavailable", err)
	}
	// After a while the surviving replica answers for the leaderless bucket
	// itself (nats-server does so once its group has been leaderless for
	// some seconds); Check must still fail then.
	_, survivorJS := natstest.Connect(t, cluster.Nodes[survivor].ClientURL())
	waitForLeaderlessAnswer(t, survivorJS, "KV_sessions")
	if err := sm.Check(context.Background()); !errors.Is(err, sessions.ErrUnavailable) {
		t.Errorf("Check once the survivor answers for the leaderless bucket = %v, want ErrUnavailable", err)
	}
}

// waitForLeaderlessAnswer waits until the server js is connected to answers
// a stream info request for stream and says it has no leader.
func waitForLeaderlessAnswer(t *testing.T, js jetstream.JetStream, stream string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := js.Stream(ctx, stream)
		cancel()
		if err == nil && st.CachedInfo().Cluster != nil && st.CachedInfo().Cluster.Leader == "" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the surviving replica never answered for the leaderless stream %s", stream)
}

func TestOversizedSessionFailsAndLeavesThePreviousStateIntact(t *testing.T) {
	t.Parallel()
	log, rec := logtest.New()
	e := newEnv(t, sessions.Config{Logger: log}, natstest.Options{MaxPayload: 4096})
	c := newClient()
	c.run(e.sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "small", "kept")) })
	w := c.run(e.sm, func(ctx context.Context) {
		must(t, sessions.Put(ctx, "big", strings.Repeat("x", 8000)))
		must(t, sessions.Put(ctx, "small", "overwritten"))
	})
	logged := rec.Entries()
	if len(logged) != 1 {
		t.Fatalf("logged %v, want one entry", logged)
	}
	err := logged[0].Str("error")
	if w.Code != http.StatusInternalServerError || !strings.HasPrefix(err, sessions.ErrTooLarge.Error()) ||
		!strings.Contains(err, "max_payload is 4096 bytes") || logged[0].Str("level") != "warn" ||
		logged[0].Str("message") != "sessions: session not saved" || logged[0].Str("method") != http.MethodGet {
		t.Fatalf("oversized save: %d %q, logged %v; want 500 and a warning of ErrTooLarge naming the 4096-byte limit", w.Code, w.Body, logged[0])
	}
	t.Logf("error: %v", err)
	if vary := w.Header().Values("Vary"); !slices.Contains(vary, "Cookie") {
		t.Errorf("the error response that replaced the handler's has Vary %q, want Cookie: it depends on the cookie too", vary)
	}
	c.run(e.sm, func(ctx context.Context) {
		if v, _ := sessions.GetString(ctx, "small"); v != "kept" || sessions.Has(ctx, "big") {
			t.Errorf("after the failed save: small=%q big=%v, want the previous state", v, sessions.Has(ctx, "big"))
		}
	})
	fresh := newClient()
	fresh.run(e.sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "big", make([]byte, 8000))) })
	if fresh.token != "" {
		t.Error("an oversized new session still got a cookie")
	}
}

// TestAFailedLoadIsLoggedWithTheRequestsTrace: the warning written when a
// session cannot be loaded carries the request's context, so a trace hook
// (node.TraceHook) gives it the trace and span IDs of the request's span.
func TestAFailedLoadIsLoggedWithTheRequestsTrace(t *testing.T) {
	var buf bytes.Buffer
	e := newEnv(t, sessions.Config{StoreTimeout: 300 * time.Millisecond, Logger: zerolog.New(&buf).Hook(node.TraceHook{})})
	c := login(t, e)
	other := e.node() // another web node: the session is not in its copy
	e.srv.Shutdown()
	for end := time.Now().Add(10 * time.Second); other.Check(context.Background()) == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the node still reaches NATS 10 s after its shutdown")
		}
	}

	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 1}, SpanID: trace.SpanID{0x00, 0xf0, 2}, TraceFlags: trace.FlagsSampled})
	r := c.request(http.MethodGet, "/", nil)
	r = r.WithContext(trace.ContextWithSpanContext(r.Context(), sc))
	if w := c.do(other.Middleware(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})), r); w.Code != http.StatusServiceUnavailable {
		t.Fatalf("request with NATS down: %d, want 503", w.Code)
	}
	line := buf.String()
	if !strings.Contains(line, "session not loaded") || !strings.Contains(line, `"trace_id":"`+sc.TraceID().String()+`"`) ||
		!strings.Contains(line, `"span_id":"`+sc.SpanID().String()+`"`) {
		t.Errorf("log: %s; want the failed load with the request's trace and span IDs", line)
	}
}
