package sessions

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/natstest"
)

// A node whose copy stopped serving a session (its sweep found the
// revision it held gone from the bucket: replaced by a write the watch has
// not delivered yet, or removed by the bound) still never serves that
// session older than it served it before, even to a client whose revision
// cookie is older (a tab whose cookie another tab's late response
// lowered), though a lagging replica answers about half its direct gets
// with the session's first revision.
func TestANodeNeverServesASessionOlderThanItServedBefore(t *testing.T) {
	t.Parallel()
	_, js := natstest.Connect(t, natstest.Start(t).ClientURL())
	m, err := New(js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	ctx := context.Background()
	version := func(v int) *record { return testRecord(strconv.Itoa(v)) }
	key := storageKey(newToken())
	first, err := m.write(ctx, key, version(0), 0)
	if err != nil {
		t.Fatal(err)
	}
	// A replica that holds the first revision and takes no later one.
	lag, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LAGGING", Mirror: &jetstream.StreamSource{Name: "KV_sessions"},
		MirrorDirect: true, MaxMsgs: 1, Discard: jetstream.DiscardNew})
	if err != nil {
		t.Fatal(err)
	}
	for info, _ := lag.Info(ctx); info == nil || info.State.Msgs < 1; info, _ = lag.Info(ctx) {
		time.Sleep(10 * time.Millisecond)
	}
	rev := first
	for v := 1; v <= 5; v++ {
		if rev, err = m.write(ctx, key, version(v), rev); err != nil {
			t.Fatal(err)
		}
	}
	for _, ok := m.copy.get(key, rev); !ok; _, ok = m.copy.get(key, rev) {
		time.Sleep(10 * time.Millisecond) // the watch delivers the last write
	}
	m.copy.forgetRemoved(rev + 1) // what a sweep does to a revision the bucket no longer holds

	lowCookie := seen{rev: first, deadline: time.Now().Add(time.Hour)}
	for range 40 {
		rec, got, err := m.load(ctx, key, lowCookie)
		switch {
		case err != nil:
			t.Fatal(err)
		case rec == nil:
			t.Fatalf("loaded no session after this node served version 5 at revision %d", rev)
		case rec.csrf != "5" || got != rev:
			t.Fatalf("loaded version %s at revision %d after this node served version 5 at revision %d", rec.csrf, got, rev)
		}
	}
	// The replica still answers with the first revision. (Its last
	// sequence may have moved: the writes replaced the key's older
	// revisions in the bucket, and a mirror skips the sequences its
	// source no longer holds without storing anything.)
	if m, err := lag.GetLastMsgForSubject(ctx, "$KV.sessions."+key); err != nil || m.Sequence != first {
		t.Fatalf("the lagging replica's copy of the session: %v, %v; want revision %d", m, err, first)
	}
}
