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
// KV operations it needs, on the same server in the same run. Run:
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
// bare KV Get of the same key. Target ratio <= 1.3.
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
// a bare KV Get plus Update of the same key. Target ratio <= 1.3.
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

// BenchmarkDirectGetReference measures a bare Get on a bucket made by
// CreateKeyValue (direct gets on), for comparison: the sessions bucket
// turns direct gets off so that reads see the latest write in a cluster.
func BenchmarkDirectGetReference(b *testing.B) {
	e, _, kv, key := benchEnv(b)
	ctx := context.Background()
	direct, err := e.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "direct_ref"})
	must(b, err)
	entry, err := kv.Get(ctx, key)
	must(b, err)
	_, err = direct.Put(ctx, key, entry.Value())
	must(b, err)
	interleaved(b, "leader-get", "direct-get", func() {
		if _, err := kv.Get(ctx, key); err != nil {
			b.Fatal(err)
		}
	}, func() {
		if _, err := direct.Get(ctx, key); err != nil {
			b.Fatal(err)
		}
	})
}
