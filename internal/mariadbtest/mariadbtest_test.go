package mariadbtest_test

import (
	"context"
	"database/sql"
	"slices"
	"strings"
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
	// The replica receives the insert (its IO thread reaches the primary's
	// position) and, its SQL thread stopped, does not apply it.
	waitReceived(t, primary, replica)
	if st := slaveStatus(t, replica); st["Slave_SQL_Running"] != "No" || st["Slave_IO_Running"] != "Yes" {
		t.Fatalf("after StopSQLThread: IO thread %q, SQL thread %q; want Yes and No", st["Slave_IO_Running"], st["Slave_SQL_Running"])
	}
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

// waitReceived waits until the replica's IO thread has received everything
// the primary has logged: Gtid_IO_Pos holds @@gtid_binlog_pos.
func waitReceived(t *testing.T, primary, replica *sql.DB) {
	t.Helper()
	var want string
	if err := primary.QueryRow("SELECT @@gtid_binlog_pos").Scan(&want); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := slaveStatus(t, replica)["Gtid_IO_Pos"]
		if gtidSet(got) == gtidSet(want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replica's IO thread is at %q, the primary at %q, after 30s", got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// slaveStatus is the row of SHOW SLAVE STATUS, by column name.
func slaveStatus(t *testing.T, db *sql.DB) map[string]string {
	t.Helper()
	rows, err := db.Query("SHOW SLAVE STATUS")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatalf("SHOW SLAVE STATUS: no row (%v)", rows.Err())
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string, len(cols))
	for i, c := range cols {
		out[c] = vals[i].String
	}
	return out
}

// gtidSet is a GTID list in a canonical order.
func gtidSet(s string) string {
	parts := strings.Split(strings.ReplaceAll(s, " ", ""), ",")
	slices.Sort(parts)
	return strings.Join(parts, ",")
}
