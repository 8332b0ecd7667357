package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/proctest"
	"github.com/jetfleet/jetfleet/internal/promtest"
)

// TestWorkerReadsItsRequestsWrites: a `catalog serve` node and a `catalog
// work` process on a MariaDB primary and replica. A first login creates
// the user (a write on the primary) and dispatches send-welcome-email,
// whose handler reads the user through readmodel without UsePrimary. With
// the replica's SQL thread stopped, the job still finds the user: it
// carries the request's causal token (Jetfleet-Causal-Token), no replica
// reaches it, so the read goes to the primary, counted in the worker's
// jetfleet_db_reads_total{target="primary",reason="token_fallback"}. With
// the replica caught up before the job runs, the same read goes to the
// replica: {target="replica",reason="causal"}.
func TestWorkerReadsItsRequestsWrites(t *testing.T) {
	f := newWebFarm(t)
	_, web := f.serve("--drain-delay", "0s")
	primary, err := sql.Open("mysql", f.pair.PrimaryDSN(f.db))
	if err != nil {
		t.Fatal(err)
	}
	defer primary.Close()
	replica, err := sql.Open("mysql", f.pair.ReplicaDSN(f.db))
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close()

	// Replication paused: the replica never sees the new user.
	work, metricsURL := f.work()
	f.pair.StopSQLThread(t)
	before := dbReads(t, metricsURL)
	ct.NewClient(t, web).Login("bob")
	waitWelcome(t, primary, "bob")
	if n := countUsers(t, replica, "bob"); n != 0 {
		t.Fatalf("the paused replica has bob (%d rows): the test proves nothing", n)
	}
	after := dbReads(t, metricsURL)
	if got := after.fallback - before.fallback; got < 1 {
		t.Fatalf("the job's read was not sent to the primary for its causal token: token_fallback reads %v -> %v", before, after)
	}
	if after.causal != before.causal {
		t.Fatalf("a read was counted causal on a replica that cannot have the user: %v -> %v", before, after)
	}

	// Replication running, and caught up before the job runs: the worker
	// is stopped while the request writes, and started once the replica
	// has applied everything.
	f.pair.StartSQLThread(t)
	if code := work.Signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("work exited %d on SIGTERM", code)
	}
	ct.NewClient(t, web).Login("carol")
	syncReplica(t, f)
	if n := countUsers(t, replica, "carol"); n != 1 {
		t.Fatalf("the replica has %d rows for carol after catching up", n)
	}
	_, metricsURL = f.work() // a new process: its counters start at zero
	waitWelcome(t, primary, "carol")
	if got := dbReads(t, metricsURL); got.causal < 1 || got.fallback != 0 {
		t.Fatalf("the job's read did not go to the caught-up replica as a causal read: %+v", got)
	}
}

// work starts a `catalog work` process serving /metrics and returns it
// with its metrics URL, once it takes jobs.
func (f *webFarm) work() (*proctest.Proc, string) {
	addr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(f.t, 1)[0])
	p := proctest.Start(f.t, binary, f.t.TempDir(), f.env, "work", "--metrics-listen", addr, "--tries", "1")
	p.WaitFor(f.t, "worker started", 60*time.Second)
	return p, "http://" + addr + "/metrics"
}

// reads are a worker's read-model reads made for a causal token.
type reads struct{ causal, fallback float64 }

func dbReads(t *testing.T, url string) reads {
	t.Helper()
	fams, err := promtest.Scrape(url)
	if err != nil {
		t.Fatal(err)
	}
	return reads{
		causal:   fams.Sum("jetfleet_db_reads_total", "target", "replica", "reason", "causal"),
		fallback: fams.Sum("jetfleet_db_reads_total", "target", "primary", "reason", "token_fallback"),
	}
}

// waitWelcome waits until the welcome job has written name's email, read
// on the primary; a job that could not find the user would fail for good
// (tries 1) and never write it.
func waitWelcome(t *testing.T, primary *sql.DB, name string) {
	t.Helper()
	proctest.Eventually(t, 30*time.Second, "the welcome email of "+name, func() error {
		var n int
		if err := primary.QueryRow("SELECT COUNT(*) FROM outbox WHERE kind = 'welcome' AND recipient = ?", name).Scan(&n); err != nil {
			return err
		}
		if n != 1 {
			return errors.New("not written yet")
		}
		return nil
	})
}

func countUsers(t *testing.T, db *sql.DB, name string) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM users WHERE name = ?", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func syncReplica(t *testing.T, f *webFarm) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.pair.SyncReplica(ctx); err != nil {
		t.Fatal(err)
	}
}
