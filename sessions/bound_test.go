package sessions_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/sessions"
)

// visit is an anonymous visitor whose first request stores a session, as
// a login form does with its CSRF token: what anyone can make the bucket
// hold by sending requests.
func visit(t testing.TB, sm *sessions.Manager) *client {
	t.Helper()
	c := newClient()
	w := c.run(sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "note", strings.Repeat("x", 200))) })
	if w.Code != 200 || c.token == "" {
		t.Fatalf("visit: %d %q, token %q", w.Code, w.Body, c.token)
	}
	return c
}

// bucketBytes is the bucket stream's size and its bound.
func (e *env) bucketBytes() (bytes uint64, limit int64) {
	e.t.Helper()
	st, err := e.js.Stream(context.Background(), "KV_sessions")
	must(e.t, err)
	info, err := st.Info(context.Background())
	must(e.t, err)
	return info.State.Bytes, info.Config.MaxBytes
}

func TestVisitorsCannotGrowTheBucketPastItsBound(t *testing.T) {
	t.Parallel()
	const bound = 32 << 10
	var evicted atomic.Int64
	e := newEnv(t, sessions.Config{MaxBytes: bound, StoreTimeout: 5 * time.Second, Observe: func(ev sessions.Event) {
		if ev == sessions.EventEvicted {
			evicted.Add(1)
		}
	}})
	first := login(t, e)
	for range 500 { // about 500 × 400 bytes: six times the bound
		visit(t, e.sm)
	}
	bytes, limit := e.bucketBytes()
	if limit != bound || bytes > bound {
		t.Fatalf("bucket holds %d bytes with a bound of %d; want at most %d", bytes, limit, bound)
	}
	if n := len(e.keys()); n < 20 || n > 100 {
		t.Fatalf("%d sessions kept in %d bytes; want the latest few dozen", n, bytes)
	}
	// The newest visitors keep their sessions; the oldest was removed, and
	// its client, though its idle deadline has not come, gets a fresh
	// session on any node rather than waiting for a value that will
	// never come back (a node started now has no copy of it).
	latest := visit(t, e.sm)
	other := e.node()
	var note string
	latest.run(other, func(ctx context.Context) { note, _ = sessions.GetString(ctx, "note") })
	if len(note) != 200 {
		t.Fatalf("the latest session reads %d bytes of its note on another node; want 200", len(note))
	}
	var has bool
	w := first.run(other, func(ctx context.Context) { has = sessions.Has(ctx, "user_id") })
	if w.Code != 200 || has {
		t.Fatalf("a removed session: %d %q, user_id still there: %v; want 200 and a fresh session", w.Code, w.Body, has)
	}
	if evicted.Load() != 1 {
		t.Fatalf("%d evictions observed; want 1", evicted.Load())
	}
}

func TestANodesCopyForgetsWhatTheBoundRemoved(t *testing.T) {
	t.Parallel()
	// An idle timeout of 10 s sweeps the copy every second.
	e := newEnv(t, sessions.Config{MaxBytes: 16 << 10, IdleTimeout: 10 * time.Second})
	first := login(t, e)
	if !alive(t, e, first) {
		t.Fatal("a fresh session is not there")
	}
	for range 200 {
		visit(t, e.sm)
	}
	// The node wrote the first session itself and its copy still has it
	// until the next sweep learns where the bucket now starts.
	deadline := time.Now().Add(5 * time.Second)
	for alive(t, e, first) {
		if time.Now().After(deadline) {
			t.Fatal("the node's copy still serves a session the bucket removed 5 s ago")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestAChangeToARemovedSessionIsDiscarded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{MaxBytes: 16 << 10})
	first := login(t, e)
	for range 200 {
		visit(t, e.sm)
	}
	// The copy still holds the session, so this request sees it; its save
	// finds the key gone and discards the change rather than bring the
	// session back. The next request starts afresh.
	w := first.run(e.sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "cart", 3)) })
	if w.Code != 200 {
		t.Fatalf("a change to a removed session: %d %q; want 200", w.Code, w.Body)
	}
	var has bool
	first.run(e.sm, func(ctx context.Context) { has = sessions.Has(ctx, "user_id") || sessions.Has(ctx, "cart") })
	if has {
		t.Fatal("the removed session came back")
	}
}

func TestMaxBytesSettings(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t, natstest.Start(t).ClientURL())
	for _, tc := range []struct {
		env  string
		want string // error text; "" for none
	}{
		{"", ""},
		{"-1", ""},
		{"1048576", ""},
		{"100", `SESSION_MAX_BYTES="100": want at least 4096 bytes`},
		{"1GB", `SESSION_MAX_BYTES="1GB"`},
		{"1125899906842624", "no room to reserve the bucket's bound of 1125899906842624 bytes (Config.MaxBytes, SESSION_MAX_BYTES)"}, // 1 PiB
	} {
		cfg, err := sessions.ConfigFromEnv(func(k string) string {
			if k == "SESSION_MAX_BYTES" {
				return tc.env
			}
			return ""
		})
		if err == nil {
			cfg.Bucket = "bound" + strings.TrimPrefix(tc.env, "-")
			var sm *sessions.Manager
			if sm, err = sessions.New(js, cfg); err == nil {
				sm.Close()
			}
		}
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("SESSION_MAX_BYTES=%q: %v", tc.env, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("SESSION_MAX_BYTES=%q: error %v; want one naming %q", tc.env, err, tc.want)
		}
	}
}

func TestEveryClusterNodeGivesARemovedSessionsClientAFreshOne(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	t.Parallel()
	cluster := natstest.StartCluster(t, 3)
	cfg := sessions.Config{Replicas: 3, MaxBytes: 32 << 10, LocalCopy: -1, StoreTimeout: 5 * time.Second, Now: newFakeClock().Now}
	var nodes []*sessions.Manager
	for _, srv := range cluster.Nodes {
		_, js := natstest.Connect(t, srv.ClientURL())
		sm, err := sessions.New(js, cfg)
		must(t, err)
		nodes = append(nodes, sm)
	}
	first := newClient()
	first.run(nodes[0], func(ctx context.Context) { must(t, sessions.Put(ctx, "user_id", 1)) })
	for i := range 300 {
		visit(t, nodes[i%3])
	}
	// Each node asks the stream's leader where the bucket now starts, and
	// gives the client a fresh session rather than wait for its revision.
	for i, sm := range nodes {
		c := *first
		var has bool
		if w := c.run(sm, func(ctx context.Context) { has = sessions.Has(ctx, "user_id") }); w.Code != 200 || has {
			t.Fatalf("node %d: a removed session: %d %q, user_id still there: %v; want 200 and a fresh session", i, w.Code, w.Body, has)
		}
	}
}
