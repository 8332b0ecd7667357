package readmodel_test

import (
	"context"
	"database/sql"
	"errors"
	"io"
	"log"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/internal/mariadbtest"
	"github.com/jetfleet/jetfleet/readmodel"
)

// One MariaDB primary+replica pair serves every test of this package (each
// test gets its own database and resets the pair first); it starts with the
// first test that needs it.
var shared struct {
	once sync.Once
	pair *mariadbtest.Pair
	err  error
}

func TestMain(m *testing.M) {
	// The driver logs every connection it finds broken; the kill tests
	// break hundreds on purpose.
	_ = mysql.SetLogger(log.New(io.Discard, "", 0))
	code := m.Run()
	if shared.pair != nil {
		if err := shared.pair.Close(); err != nil {
			log.Print(err)
		}
	}
	os.Exit(code)
}

// mariaPair returns the shared pair, reset to a running, caught-up state,
// or skips the test when MariaDB is not installed.
func mariaPair(t testing.TB) *mariadbtest.Pair {
	t.Helper()
	if err := mariadbtest.Available(); err != nil {
		t.Skipf("mariadbtest: %v", err)
	}
	shared.once.Do(func() { shared.pair, shared.err = mariadbtest.New() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	shared.pair.Reset(t)
	return shared.pair
}

// mariaConfig is a Config for the pair and database db, with faster health
// checks than the default so state changes show up quickly.
func mariaConfig(t testing.TB, p *mariadbtest.Pair, db string) readmodel.Config {
	return readmodel.Config{
		Driver:        readmodel.DriverMySQL,
		WriteHost:     p.Primary.Addr(),
		ReadHosts:     []string{p.Replica.Addr()},
		Database:      db,
		Username:      mariadbtest.AppUser,
		Password:      p.Password,
		CheckInterval: 100 * time.Millisecond,
		Logger:        zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel),
	}
}

// open opens a DB closed at the test's cleanup.
func open(t testing.TB, cfg readmodel.Config) *readmodel.DB {
	t.Helper()
	db, err := readmodel.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return db
}

// openMaria opens a DB on a fresh database of the shared pair.
func openMaria(t testing.TB, change func(*readmodel.Config)) (*readmodel.DB, *mariadbtest.Pair, string) {
	t.Helper()
	p := mariaPair(t)
	name := p.NewDatabase(t)
	cfg := mariaConfig(t, p, name)
	if change != nil {
		change(&cfg)
	}
	return open(t, cfg), p, name
}

// openSQLite opens a DB on a new SQLite file.
func openSQLite(t testing.TB) *readmodel.DB {
	t.Helper()
	return open(t, readmodel.Config{Database: filepath.Join(t.TempDir(), "test.db")})
}

// serverID is @@server_id of the member a read in ctx goes to: 1 is the
// primary, 2 the replica (from deploy/mariadb).
func serverID(t testing.TB, db *readmodel.DB, ctx context.Context) int {
	t.Helper()
	var id int
	if err := db.Get(ctx, &id, "SELECT @@server_id"); err != nil {
		t.Fatal(err)
	}
	return id
}

// replica is the replica's state.
func replica(db *readmodel.DB) readmodel.MemberState { return db.Members()[1] }

// eventually polls cond until it holds, failing the test after timeout.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: still not %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncReplica waits until the replica has applied everything.
func syncReplica(t testing.TB, p *mariadbtest.Pair) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.SyncReplica(ctx); err != nil {
		t.Fatal(err)
	}
}

func mustExec(t testing.TB, db *readmodel.DB, ctx context.Context, q string, args ...any) sql.Result {
	t.Helper()
	res, err := db.Exec(ctx, q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return res
}

// noteTable creates the table most tests use, in the DB's dialect.
func noteTable(t testing.TB, db *readmodel.DB) {
	t.Helper()
	q := "CREATE TABLE notes (id INTEGER PRIMARY KEY, title TEXT NOT NULL, n INTEGER NOT NULL DEFAULT 0)"
	if db.Driver() == readmodel.DriverMySQL {
		q = "CREATE TABLE notes (id BIGINT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(100) NOT NULL, n INT NOT NULL DEFAULT 0)"
	}
	mustExec(t, db, context.Background(), q)
}

// title reads note id's title in ctx; "" if there is no such row.
func title(t testing.TB, db *readmodel.DB, ctx context.Context, id int64) string {
	t.Helper()
	var s string
	err := db.Get(ctx, &s, "SELECT title FROM notes WHERE id = ?", id)
	if errors.Is(err, sql.ErrNoRows) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}
