package readmodel_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/readmodel"
)

// reads records what Config.ObserveRead is told.
type reads struct {
	mu  sync.Mutex
	got []string
}

func (r *reads) observe(target readmodel.Role, why readmodel.ReadReason) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, string(target)+"/"+string(why))
}

// take returns the reads seen since the last take.
func (r *reads) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.got
	r.got = nil
	return out
}

// TestObserveReadReasons routes reads of every kind through a real
// primary and replica and checks the target and reason ObserveRead gets
// for each: the replica for plain reads and caught-up tokens, the primary
// for marked, locking, sticky and token-fallback reads.
func TestObserveReadReasons(t *testing.T) {
	rec := &reads{}
	db, p, _ := openMaria(t, func(c *readmodel.Config) {
		c.MaxReplicaLag = time.Minute
		c.ObserveRead = rec.observe
	})
	noteTable(t, db)
	syncReplica(t, p)
	ctx := context.Background()
	rec.take()

	step := func(what string, want string, read func()) {
		t.Helper()
		read()
		if got := rec.take(); len(got) != 1 || got[0] != want {
			t.Errorf("%s: ObserveRead got %v, want [%s]", what, got, want)
		}
	}
	step("plain read", "replica/balanced", func() { serverID(t, db, ctx) })
	step("UsePrimary", "primary/marked", func() { serverID(t, db, readmodel.UsePrimary(ctx)) })
	step("locking read", "primary/not_plain", func() {
		var n int
		_ = db.Get(ctx, &n, "SELECT COUNT(*) FROM notes FOR UPDATE")
	})
	scope := readmodel.Sticky(ctx)
	mustExec(t, db, scope, "INSERT INTO notes (title) VALUES (?)", "sticky")
	step("read after a write in a Sticky scope", "primary/sticky", func() { serverID(t, db, scope) })
	tok := readmodel.Token(scope)
	syncReplica(t, p)
	step("token the replica has", "replica/causal", func() { serverID(t, db, readmodel.WithToken(ctx, tok)) })

	p.StopSQLThread(t)
	defer p.StartSQLThread(t)
	scope2 := readmodel.Sticky(ctx)
	mustExec(t, db, scope2, "INSERT INTO notes (title) VALUES (?)", "unreplicated")
	step("token the replica lacks", "primary/token_fallback", func() {
		serverID(t, db, readmodel.WithToken(ctx, readmodel.Token(scope2)))
	})
}

// TestObserveReadWithoutReplicas: SQLite has no replica, so every read is
// primary/no_replica.
func TestObserveReadWithoutReplicas(t *testing.T) {
	rec := &reads{}
	db := open(t, readmodel.Config{Database: t.TempDir() + "/o.db", ObserveRead: rec.observe})
	var n int
	if err := db.Get(context.Background(), &n, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if got := rec.take(); len(got) != 1 || got[0] != "primary/no_replica" {
		t.Fatalf("ObserveRead got %v, want [primary/no_replica]", got)
	}
}
