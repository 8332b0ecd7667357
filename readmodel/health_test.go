package readmodel_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/readmodel"
)

// TestLagLeavesAndRejoinsPool: a replica lagging past MaxReplicaLag leaves
// the pool; reads keep succeeding (on the primary, which has the write);
// once it catches up it rejoins. Lag is made two ways: by stopping the
// replica's SQL thread while the primary takes a write (Seconds_Behind_Master
// is then NULL, so the GTID measure must see it), and by a delayed replica
// (MASTER_DELAY), whose threads run and whose Seconds_Behind_Master grows.
func TestLagLeavesAndRejoinsPool(t *testing.T) {
	t.Run("sql-thread-stopped", func(t *testing.T) {
		p := mariaPair(t)
		lagTest(t, func() { p.StopSQLThread(t) }, func() { p.StartSQLThread(t) })
	})
	t.Run("delayed-replica", func(t *testing.T) {
		p := mariaPair(t)
		delay := func(seconds int) {
			q := fmt.Sprintf("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY = %d; START SLAVE", seconds)
			if _, err := p.Replica.Admin().ExecContext(context.Background(), q); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { delay(0) })
		lagTest(t, func() { delay(30) }, func() { delay(0) })
	})
}

func lagTest(t *testing.T, pause, resume func()) {
	db, p, _ := openMaria(t, func(c *readmodel.Config) { c.MaxReplicaLag = time.Second })
	noteTable(t, db)
	syncReplica(t, p)
	ctx := context.Background()
	eventually(t, 10*time.Second, "the replica in the pool", func() bool { return replica(db).InPool })

	pause()
	res := mustExec(t, db, ctx, "INSERT INTO notes (title) VALUES (?)", "missed")
	id, _ := res.LastInsertId()
	eventually(t, 15*time.Second, "the lagging replica out of the pool", func() bool {
		title(t, db, ctx, id) // reads keep succeeding meanwhile (title fails the test otherwise)
		return !replica(db).InPool
	})
	if r := replica(db); !strings.Contains(r.Reason, "lagging") || r.Lag <= time.Second || !r.Up {
		t.Fatalf("replica state %+v: want up, lagging over 1s", r)
	}
	if got := title(t, db, ctx, id); got != "missed" {
		t.Fatalf("with the replica out, a read got %q; want the write, from the primary", got)
	}
	if sid := serverID(t, db, ctx); sid != 1 {
		t.Fatalf("with the replica out, a read went to server %d", sid)
	}

	resume()
	eventually(t, 15*time.Second, "the caught-up replica back in the pool", func() bool { return replica(db).InPool })
	if sid := serverID(t, db, ctx); sid != 2 {
		t.Fatalf("after rejoining, a read went to server %d", sid)
	}
	if got := title(t, db, ctx, id); got != "missed" {
		t.Fatalf("the caught-up replica read %q", got)
	}
}

// TestBrokenReplicationLeavesPool: a replica whose SQL thread stops on an
// error (a duplicate key, from a row written on the replica alone) leaves
// the pool at once, and rejoins when replication is repaired.
func TestBrokenReplicationLeavesPool(t *testing.T) {
	db, p, name := openMaria(t, nil)
	noteTable(t, db)
	syncReplica(t, p)
	ctx := context.Background()
	eventually(t, 10*time.Second, "the replica in the pool", func() bool { return replica(db).InPool })

	local := fmt.Sprintf("SET sql_log_bin = 0; INSERT INTO `%s`.notes (id, title) VALUES (100, 'replica only'); SET sql_log_bin = 1", name)
	if _, err := p.Replica.Admin().ExecContext(ctx, local); err != nil {
		t.Fatal(err)
	}
	mustExec(t, db, ctx, "INSERT INTO notes (id, title) VALUES (100, 'primary')")
	eventually(t, 10*time.Second, "the broken replica out of the pool", func() bool { return !replica(db).InPool })
	if r := replica(db); !strings.Contains(r.Reason, "broken") || !strings.Contains(r.LastError, "Duplicate") {
		t.Fatalf("replica state %+v: want broken by a duplicate key", r)
	}
	if got := title(t, db, ctx, 100); got != "primary" {
		t.Fatalf("with the replica broken, a read got %q", got)
	}

	fix := fmt.Sprintf("SET sql_log_bin = 0; DELETE FROM `%s`.notes WHERE id = 100; SET sql_log_bin = 1; START SLAVE SQL_THREAD", name)
	if _, err := p.Replica.Admin().ExecContext(ctx, fix); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the repaired replica back in the pool", func() bool { return replica(db).InPool })
	if sid := serverID(t, db, ctx); sid != 2 {
		t.Fatalf("after the repair, a read went to server %d", sid)
	}
}

// TestKillReplicaUnderLoad: 1,000 goroutines read without pause while the
// replica is killed with SIGKILL; not one read fails. Restarted, the replica
// rejoins the pool.
func TestKillReplicaUnderLoad(t *testing.T) {
	db, p, _ := openMaria(t, nil)
	ctx := context.Background()
	eventually(t, 10*time.Second, "the replica in the pool", func() bool { return replica(db).InPool })

	var okReplica, okPrimary, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 1000 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				var id int
				switch err := db.Get(ctx, &id, "SELECT @@server_id"); {
				case err != nil:
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				case id == 2:
					okReplica.Add(1)
				default:
					okPrimary.Add(1)
				}
			}
		})
	}
	var once sync.Once
	halt := func() { once.Do(func() { close(stop) }); wg.Wait() }
	defer halt()
	deadline := 60 * time.Second
	eventually(t, deadline, "1,000 reads served by the replica", func() bool { return okReplica.Load() >= 1000 })
	p.StopReplica(t, true)
	killed := okReplica.Load() + okPrimary.Load()
	eventually(t, deadline, "the killed replica out of the pool and 2,000 more reads done", func() bool {
		return !replica(db).InPool && okReplica.Load()+okPrimary.Load() >= killed+2000
	})
	halt()
	t.Logf("reads: %d on the replica, %d on the primary, %d failed", okReplica.Load(), okPrimary.Load(), failed.Load())
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d reads failed; the first: %v", n, firstErr.Load())
	}
	if r := replica(db); r.Up || r.LastError == "" {
		t.Fatalf("killed replica state %+v: want down, with the error", r)
	}

	p.StartReplica(t)
	eventually(t, 30*time.Second, "the restarted replica back in the pool", func() bool { return replica(db).InPool })
	if sid := serverID(t, db, ctx); sid != 2 {
		t.Fatalf("after the restart, a read went to server %d", sid)
	}
}

// TestReplicaDownAtStartupJoinsLater: a replica that is down when Open runs
// is used as soon as it comes up.
func TestReplicaDownAtStartupJoinsLater(t *testing.T) {
	p := mariaPair(t)
	name := p.NewDatabase(t)
	p.StopReplica(t, false)
	db := open(t, mariaConfig(t, p, name))
	ctx := context.Background()
	if r := replica(db); r.Up || r.InPool || r.Reason != "unreachable" {
		t.Fatalf("replica state at start-up %+v: want down, out of the pool", r)
	}
	if sid := serverID(t, db, ctx); sid != 1 {
		t.Fatalf("with the replica down, a read went to server %d", sid)
	}
	p.StartReplica(t)
	eventually(t, 30*time.Second, "the replica joining the pool", func() bool { return replica(db).InPool })
	if sid := serverID(t, db, ctx); sid != 2 {
		t.Fatalf("after it joined, a read went to server %d", sid)
	}
}

// TestAReplicaWhoseReadsHangIsRoutedAround: a replica whose health checks
// answer while reads of a table hang (here a LOCK TABLES ... WRITE held on
// the replica) does not hold reads up: after ReplicaReadTimeout the read
// runs on the primary, and the replica stays out of the pool for 30 health
// checks (though they find it fine), then comes back.
func TestAReplicaWhoseReadsHangIsRoutedAround(t *testing.T) {
	var retried atomic.Int64
	db, p, name := openMaria(t, func(c *readmodel.Config) {
		c.ReplicaReadTimeout = 300 * time.Millisecond
		c.CheckInterval = 200 * time.Millisecond // out for 6 s after a slow read
		c.ObserveRead = func(target readmodel.Role, why readmodel.ReadReason) {
			if why == readmodel.ReadRetried && target == readmodel.RolePrimary {
				retried.Add(1)
			}
		}
	})
	noteTable(t, db)
	ctx := context.Background()
	mustExec(t, db, ctx, "INSERT INTO notes (id, title) VALUES (1, 'one')")
	syncReplica(t, p)
	eventually(t, 10*time.Second, "the replica in the pool", func() bool { return replica(db).InPool })

	lock, err := p.Replica.Admin().Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if _, err := lock.ExecContext(ctx, fmt.Sprintf("LOCK TABLES `%s`.notes WRITE", name)); err != nil {
		t.Fatal(err)
	}
	const where = "SELECT CONCAT(title, '@', @@server_id) FROM notes WHERE id = 1"
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second) // the read's own deadline is far
	defer cancel()
	var got string
	if err := db.Get(rctx, &got, where); err != nil || got != "one@1" {
		t.Fatalf("a read while the replica's table is locked: %q, %v; want one@1 from the primary", got, err)
	}
	if n := retried.Load(); n != 1 {
		t.Errorf("reads retried on the primary: %d, want 1", n)
	}
	r := replica(db)
	if r.InPool || !strings.Contains(r.Reason, "longer than 300ms") || !strings.Contains(r.LastError, "sent nothing for 300ms") {
		t.Fatalf("replica after a slow read: %+v; want out of the pool, saying the read was slow", r)
	}

	time.Sleep(time.Second) // five health checks, all of which find the replica fine
	if r := replica(db); r.InPool || !r.Up {
		t.Fatalf("replica a second after its slow read: %+v; want up but out of the pool", r)
	}
	rows, err := db.Query(rctx, where)
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() || rows.Scan(&got) != nil || got != "one@1" {
		t.Errorf("Query while the replica is out: %q; want one@1", got)
	}
	_ = rows.Close()

	if _, err := lock.ExecContext(ctx, "UNLOCK TABLES"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "the replica back in the pool", func() bool { return replica(db).InPool })
	if err := db.Get(ctx, &got, where); err != nil || got != "one@2" {
		t.Fatalf("a read with the replica back: %q, %v; want one@2", got, err)
	}
}
