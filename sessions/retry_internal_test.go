package sessions

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nuid"

	"github.com/jetfleet/jetfleet/internal/natstest"
)

// testRecord is a session record whose CSRF token says which version it
// is.
func testRecord(version string) *record {
	now := time.Now()
	return &record{created: now, touched: now, idleDeadline: now.Add(time.Hour), absDeadline: now.Add(time.Hour),
		csrf: version, values: map[string]entry{}}
}

// A write's try whose answer was lost (a slow or cut route) may have been
// stored; when the write is tried again after another request wrote the
// session, the cluster answers with the first try's revision instead of
// storing the older change again over the newer one. Without the write's
// ID, the retry finds the session changed, and the request's change would
// be replayed on top of the other request's (commitExisting).
func TestARetriedWriteIsNotStoredAgainOverALaterOne(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	t.Parallel()
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.StartCluster(t, 3).Nodes[0].ClientURL())
	m, err := New(js, Config{Replicas: 3, LocalCopy: -1})
	if err != nil {
		t.Fatal(err)
	}
	key := storageKey(newToken())
	first, err := m.write(ctx, key, testRecord("0"), 0)
	if err != nil {
		t.Fatal(err)
	}
	id := nuid.Next()
	stored, err := m.wire.update(ctx, key, testRecord("1").encode(), first, id) // its answer "lost"
	if err != nil {
		t.Fatal(err)
	}
	later, err := m.write(ctx, key, testRecord("2"), stored) // another request
	if err != nil {
		t.Fatal(err)
	}
	again, err := m.wire.update(ctx, key, testRecord("1").encode(), first, id) // the retry
	if err != nil || again != stored {
		t.Fatalf("the retry: revision %d, %v; want the first try's revision %d", again, err, stored)
	}
	rec, rev, err := m.load(ctx, key, seen{rev: later})
	if err != nil || rec == nil || rec.csrf != "2" || rev != later {
		t.Fatalf("after the retry the session is %+v at revision %d (%v); want version 2 at %d", rec, rev, err, later)
	}
}
