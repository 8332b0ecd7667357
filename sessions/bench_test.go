package sessions_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/sessions"
)

// The benchmarks compare a request through the middleware with the bare
// KV operations it needs, on the same embedded server in the same run (the
// comparison with scs on Redis, NATS in a process of its own, is
// bench/sessions in the bench module). Run:
//
//	go test ./sessions -run '^$' -bench . -benchtime 3s

func benchEnv(b *testing.B) (*env, *client, jetstream.KeyValue, string) {
	e := newEnv(b, sessions.Config{Now: time.Now})
	c := login(b, e)
	c.run(e.sm, func(ctx context.Context) { must(b, sessions.Put(ctx, "name", "Ada Lovelace")) })
	return e, c, e.kv(), hashOf(c.token)
}

// interleaved times bare and wrapped alternately in one loop, so that both
// see the same machine load, and reports each one's ns/op and the ratio
// wrapped/bare.
func interleaved(b *testing.B, bareName, wrappedName string, bare, wrapped func()) {
	var bareTotal, wrappedTotal time.Duration
	i := 0
	for b.Loop() {
		first, second, ft, st := bare, wrapped, &bareTotal, &wrappedTotal
		if i%2 == 1 {
			first, second, ft, st = wrapped, bare, &wrappedTotal, &bareTotal
		}
		t0 := time.Now()
		first()
		t1 := time.Now()
		second()
		*ft += t1.Sub(t0)
		*st += time.Since(t1)
		i++
	}
	n := float64(b.N)
	b.ReportMetric(float64(bareTotal.Nanoseconds())/n, bareName+"-ns/op")
	b.ReportMetric(float64(wrappedTotal.Nanoseconds())/n, wrappedName+"-ns/op")
	b.ReportMetric(float64(wrappedTotal)/float64(bareTotal), "ratio")
}

// BenchmarkReadPath: a request whose handler reads the session, against a
// bare KV Get (a direct get) of the same key. The request is answered from
// the node's copy of the bucket, so the ratio is well below 1.
func BenchmarkReadPath(b *testing.B) {
	e, c, kv, key := benchEnv(b)
	ctx := context.Background()
	h := e.sm.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := sessions.GetInt(r.Context(), "user_id"); !ok {
			b.Fatal("session not loaded")
		}
	}))
	r := c.request(http.MethodGet, "/", nil)
	interleaved(b, "kv-get", "middleware", func() {
		if _, err := kv.Get(ctx, key); err != nil {
			b.Fatal(err)
		}
	}, func() { h.ServeHTTP(httptest.NewRecorder(), r) })
}

// BenchmarkWritePath: a request whose handler changes the session, against
// a bare KV Get plus Update of the same key (the request reads from the
// node's copy and makes the update only).
func BenchmarkWritePath(b *testing.B) {
	e, c, kv, key := benchEnv(b)
	ctx := context.Background()
	n := 0
	h := e.sm.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n++
		if err := sessions.Put(r.Context(), "visits", n); err != nil {
			b.Fatal(err)
		}
	}))
	r := c.request(http.MethodGet, "/", nil)
	interleaved(b, "kv-get-update", "middleware", func() {
		entry, err := kv.Get(ctx, key)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := kv.Update(ctx, key, entry.Value(), entry.Revision()); err != nil {
			b.Fatal(err)
		}
	}, func() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	})
}

// BenchmarkGetKinds measures the two reads a load falls back to when the
// node's copy cannot answer, on the sessions bucket: a direct get (any
// replica answers; what nats.go's KeyValue.Get does on this bucket) and a
// leader get ($JS.API.STREAM.MSG.GET, only the stream leader answers).
func BenchmarkGetKinds(b *testing.B) {
	e, _, kv, key := benchEnv(b)
	ctx := context.Background()
	req := []byte(`{"last_by_subj":"$KV.sessions.` + key + `"}`)
	nc := e.js.Conn()
	interleaved(b, "leader-get", "direct-get", func() {
		if _, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET.KV_sessions", req); err != nil {
			b.Fatal(err)
		}
	}, func() {
		if _, err := kv.Get(ctx, key); err != nil {
			b.Fatal(err)
		}
	})
}
