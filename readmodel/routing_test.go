package readmodel_test

import (
	"context"
	"errors"
	"regexp"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/jetfleet/jetfleet/readmodel"
)

// TestReadsGoToReplicaWritesToPrimary tells the servers apart by
// @@server_id (1 is the primary, 2 the replica, from deploy/mariadb).
func TestReadsGoToReplicaWritesToPrimary(t *testing.T) {
	db, p, _ := openMaria(t, nil)
	ctx := context.Background()
	for range 10 {
		if id := serverID(t, db, ctx); id != 2 {
			t.Fatalf("a read went to server %d, want the replica (2)", id)
		}
	}
	if id := serverID(t, db, readmodel.UsePrimary(ctx)); id != 1 {
		t.Fatalf("a read marked UsePrimary went to server %d", id)
	}

	// A write records where it ran: row-based replication copies the
	// primary's value to the replica.
	mustExec(t, db, ctx, "CREATE TABLE w (id INT AUTO_INCREMENT PRIMARY KEY, server_id INT NOT NULL)")
	mustExec(t, db, ctx, "INSERT INTO w (server_id) VALUES (@@server_id)")
	syncReplica(t, p)
	var wrote int
	if err := db.Get(ctx, &wrote, "SELECT server_id FROM w WHERE id = 1"); err != nil || wrote != 1 {
		t.Fatalf("the write ran on server %d (%v), want the primary", wrote, err)
	}

	err := db.Tx(ctx, func(tx *sqlx.Tx) error { return tx.Get(&wrote, "SELECT @@server_id") })
	if err != nil || wrote != 1 {
		t.Fatalf("a transaction ran on server %d (%v)", wrote, err)
	}
	for _, q := range []string{
		"SELECT @@server_id FROM w WHERE id = 1 FOR UPDATE",
		"SELECT @@server_id FROM w WHERE id = 1 LOCK IN SHARE MODE",
	} {
		if err := db.Get(ctx, &wrote, q); err != nil || wrote != 1 {
			t.Fatalf("%s ran on server %d (%v)", q, wrote, err)
		}
	}
	var id int
	if err := db.Reader(ctx).Get(&id, "SELECT @@server_id"); err != nil || id != 2 {
		t.Fatalf("Reader() is server %d (%v)", id, err)
	}
	if err := db.Writer().Get(&id, "SELECT @@server_id"); err != nil || id != 1 {
		t.Fatalf("Writer() is server %d (%v)", id, err)
	}

	m := db.Members()
	if len(m) != 2 || !m[0].Up || !m[0].InPool || m[0].ReadOnly || m[0].Position == "" ||
		!m[1].Up || !m[1].InPool || !m[1].ReadOnly || m[1].IORunning != "Yes" || m[1].SQLRunning != "Yes" {
		t.Fatalf("Members = %+v", m)
	}
}

// TestSticky: in a sticky scope a read after a write sees the new row even
// though the replica has not applied it (its SQL thread is stopped), while
// a read outside the scope, at the same moment, goes to the replica.
func TestSticky(t *testing.T) {
	db, p, _ := openMaria(t, func(c *readmodel.Config) { c.MaxReplicaLag = time.Minute })
	noteTable(t, db)
	syncReplica(t, p)
	p.StopSQLThread(t)

	req := readmodel.Sticky(context.Background())
	if id := serverID(t, db, req); id != 2 {
		t.Fatalf("before any write the scope read from server %d, want the replica", id)
	}
	res := mustExec(t, db, req, "INSERT INTO notes (title) VALUES (?)", "hello")
	id, _ := res.LastInsertId()
	wrote := time.Now()
	eventually(t, 10*time.Second, "a health check seeing the stopped SQL thread", func() bool {
		r := replica(db)
		return r.CheckedAt.After(wrote) && r.SQLRunning == "No"
	})
	if r := replica(db); !r.InPool {
		t.Fatalf("a replica missing one young write left the pool: %+v", r)
	}
	if got := title(t, db, req, id); got != "hello" {
		t.Fatalf("the scope's read after its write got %q, want hello", got)
	}
	if sid := serverID(t, db, req); sid != 1 {
		t.Fatalf("after a write the scope read from server %d, want the primary", sid)
	}
	other := readmodel.Sticky(context.Background())
	if got := title(t, db, other, id); got != "" {
		t.Fatalf("another scope read %q: it should have gone to the stopped replica", got)
	}
	if sid := serverID(t, db, other); sid != 2 {
		t.Fatalf("another scope read from server %d, want the replica", sid)
	}
	if !replica(db).InPool {
		t.Fatalf("replica left the pool: %+v", replica(db))
	}
}

// TestCausalToken: a token from a write on one node makes reads on another
// node see the write: from the primary while replication is paused, and from
// the replica again once it has caught up.
func TestCausalToken(t *testing.T) {
	nodeA, p, name := openMaria(t, func(c *readmodel.Config) { c.MaxReplicaLag = time.Minute })
	noteTable(t, nodeA)
	syncReplica(t, p)
	cfgB := mariaConfig(t, p, name)
	cfgB.MaxReplicaLag = time.Minute
	nodeB := open(t, cfgB)

	p.StopSQLThread(t)
	req1 := readmodel.Sticky(context.Background())
	res := mustExec(t, nodeA, req1, "INSERT INTO notes (title) VALUES (?)", "causal")
	id, _ := res.LastInsertId()
	tok := readmodel.Token(req1)
	wrote := time.Now()
	eventually(t, 10*time.Second, "node B's health check seeing the stopped SQL thread", func() bool {
		r := replica(nodeB)
		return r.CheckedAt.After(wrote) && r.SQLRunning == "No" && r.InPool
	})
	if !regexp.MustCompile(`^0-1-\d+$`).MatchString(tok) {
		t.Fatalf("Token = %q, want a GTID from the primary (domain 0, server 1)", tok)
	}

	req2 := readmodel.WithToken(context.Background(), tok)
	if got := title(t, nodeB, req2, id); got != "causal" {
		t.Fatalf("with the token node B read %q, want the write", got)
	}
	if sid := serverID(t, nodeB, req2); sid != 1 {
		t.Fatalf("with the token and replication paused, read from server %d, want the primary", sid)
	}
	if got := title(t, nodeB, context.Background(), id); got != "" {
		t.Fatalf("without the token node B read %q: want the paused replica, which lacks the write", got)
	}
	if readmodel.Token(req2) != tok {
		t.Fatalf("Token(req2) = %q, want the token it came with, %q", readmodel.Token(req2), tok)
	}

	p.StartSQLThread(t) // the test's START SLAVE
	eventually(t, 10*time.Second, "reading from the replica with the token", func() bool {
		return serverID(t, nodeB, req2) == 2
	})
	if got := title(t, nodeB, req2, id); got != "causal" {
		t.Fatalf("from the caught-up replica with the token: %q", got)
	}
	if readmodel.WithToken(context.Background(), "garbage") == nil || readmodel.Token(readmodel.WithToken(context.Background(), "garbage")) != "" {
		t.Fatal("a malformed token was not ignored")
	}
}

// TestWriteToReadOnlyPrimary: a replica configured as the write host is
// refused with ErrReadOnly instead of being written to.
func TestWriteToReadOnlyPrimary(t *testing.T) {
	p := mariaPair(t)
	name := p.NewDatabase(t)
	cfg := mariaConfig(t, p, name)
	cfg.WriteHost, cfg.ReadHosts = p.Replica.Addr(), nil
	db := open(t, cfg)
	ctx := context.Background()
	if _, err := db.Exec(ctx, "CREATE TABLE x (id INT)"); !errors.Is(err, readmodel.ErrReadOnly) {
		t.Fatalf("write to a read-only primary: %v, want ErrReadOnly", err)
	}
	if err := db.Check(ctx); !errors.Is(err, readmodel.ErrReadOnly) {
		t.Fatalf("Check: %v, want ErrReadOnly", err)
	}
	if m := db.Members()[0]; !m.ReadOnly || m.InPool {
		t.Fatalf("primary state %+v: want read-only, not in the pool", m)
	}
	if _, err := readmodel.Migrate(ctx, db, nil); err == nil {
		t.Fatal("Migrate on a read-only primary: no error")
	}
	if id := serverID(t, db, ctx); id != 2 {
		t.Fatalf("reads still work: server %d", id)
	}
}
