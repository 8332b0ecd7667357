package mariadbtest_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/jetfleet/jetfleet/internal/mariadbtest"
)

// TestPair starts a pair and checks what the helper promises: two servers
// told apart by server_id, the replica read-only for the application user,
// GTID replication flowing, and the stop/start controls.
func TestPair(t *testing.T) {
	p := mariadbtest.Start(t)
	db := p.NewDatabase(t)
	primary := open(t, p.PrimaryDSN(db))
	replica := open(t, p.ReplicaDSN(db))
	ctx := context.Background()

	if id := serverID(t, primary); id != 1 {
		t.Fatalf("primary server_id = %d, want 1 (from deploy/mariadb/primary.cnf)", id)
	}
	if id := serverID(t, replica); id != 2 {
		t.Fatalf("replica server_id = %d, want 2 (from deploy/mariadb/replica.cnf)", id)
	}
	mustExec(t, primary, "CREATE TABLE t (id INT PRIMARY KEY)")
	mustExec(t, primary, "INSERT INTO t VALUES (1)")
	if _, err := replica.ExecContext(ctx, "INSERT INTO t VALUES (2)"); err == nil {
		t.Fatal("the application user wrote to the read-only replica")
	}
	sync(t, p)
	if n := count(t, replica); n != 1 {
		t.Fatalf("replica has %d rows, want 1", n)
	}

	p.StopSQLThread(t)
	mustExec(t, primary, "INSERT INTO t VALUES (2)")
	time.Sleep(200 * time.Millisecond)
	if n := count(t, replica); n != 1 {
		t.Fatalf("with the SQL thread stopped the replica has %d rows, want 1", n)
	}
	p.StartSQLThread(t)
	sync(t, p)
	if n := count(t, replica); n != 2 {
		t.Fatalf("after START SLAVE SQL_THREAD the replica has %d rows, want 2", n)
	}

	p.StopReplica(t, true)
	if p.Replica.Running() {
		t.Fatal("replica still running after SIGKILL")
	}
	mustExec(t, primary, "INSERT INTO t VALUES (3)")
	p.StartReplica(t)
	sync(t, p)
	if n := count(t, replica); n != 3 {
		t.Fatalf("after a crash and restart the replica has %d rows, want 3", n)
	}
	p.Reset(t)
}

func open(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func serverID(t *testing.T, db *sql.DB) int {
	t.Helper()
	var id int
	if err := db.QueryRow("SELECT @@server_id").Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

func count(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func mustExec(t *testing.T, db *sql.DB, q string) {
	t.Helper()
	if _, err := db.Exec(q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func sync(t *testing.T, p *mariadbtest.Pair) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.SyncReplica(ctx); err != nil {
		t.Fatal(err)
	}
}
