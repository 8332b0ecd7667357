package sessions_test

import (
	"context"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/sessions"
)

// TestACookieFromADeletedBucketGetsAFreshSession: after the sessions
// bucket is deleted and made again (an operator logging everyone out, a
// new NATS deployment), a client whose revision cookie names a revision
// of the old bucket gets a fresh session at once, not a 503 after
// StoreTimeout on every request until its cookie expires: the new stream
// was created after that revision was issued, so it can never hold it.
func TestACookieFromADeletedBucketGetsAFreshSession(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := context.Background()
	old, err := sessions.New(js, sessions.Config{Now: func() time.Time { return time.Now().Add(-time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	c := newClient()
	for i := range 5 { // the revision grows past where a new bucket starts
		c.run(old, func(ctx context.Context) { must(t, sessions.Put(ctx, "visits", i)) })
	}
	old.Close()
	if err := js.DeleteKeyValue(ctx, "sessions"); err != nil {
		t.Fatal(err)
	}
	fresh, err := sessions.New(js, sessions.Config{StoreTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	w := c.run(fresh, func(ctx context.Context) {
		if sessions.Has(ctx, "visits") {
			t.Error("a session of the deleted bucket is still seen")
		}
		must(t, sessions.Put(ctx, "visits", 1))
	})
	if w.Code != 200 {
		t.Fatalf("a request with a cookie of the deleted bucket: %d %s, want 200 and a fresh session", w.Code, w.Body)
	}
	c.run(fresh, func(ctx context.Context) {
		if v, _ := sessions.GetInt(ctx, "visits"); v != 1 {
			t.Errorf("the fresh session holds visits=%d, want 1", v)
		}
	})
}
