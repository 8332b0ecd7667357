package readmodel_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jmoiron/sqlx"

	"github.com/jetfleet/jetfleet/readmodel"
)

// TestAPI runs the same API suite on SQLite (the default), on MariaDB with
// a replica, and on MariaDB with stickiness off (so reads after writes rely
// on causal tokens instead of the primary).
func TestAPI(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { apiSuite(t, openSQLite(t)) })
	t.Run("mariadb", func(t *testing.T) {
		db, _, _ := openMaria(t, nil)
		apiSuite(t, db)
	})
	t.Run("mariadb-nosticky", func(t *testing.T) {
		db, _, _ := openMaria(t, func(c *readmodel.Config) { c.NoSticky = true })
		apiSuite(t, db)
	})
}

type note struct {
	ID    int64  `db:"id"`
	Title string `db:"title"`
	N     int    `db:"n"`
}

func apiSuite(t *testing.T, db *readmodel.DB) {
	noteTable(t, db)
	// One request scope: its reads see its writes, whatever the replicas do.
	ctx := readmodel.Sticky(context.Background())

	res := mustExec(t, db, ctx, "INSERT INTO notes (title, n) VALUES (?, ?)", "first", 1)
	id, err := res.LastInsertId()
	if n, _ := res.RowsAffected(); err != nil || id != 1 || n != 1 {
		t.Fatalf("insert: id %d (%v), %d rows", id, err, n)
	}
	if _, err := db.NamedExec(ctx, "INSERT INTO notes (title, n) VALUES (:title, :n)", note{Title: "second", N: 2}); err != nil {
		t.Fatal(err)
	}

	var got note
	if err := db.Get(ctx, &got, "SELECT id, title, n FROM notes WHERE id = ?", 1); err != nil || got != (note{1, "first", 1}) {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if err := db.Get(ctx, &got, "SELECT id, title, n FROM notes WHERE id = ?", 99); err != sql.ErrNoRows {
		t.Fatalf("Get of a missing row: %v, want sql.ErrNoRows itself", err)
	}
	var all []note
	if err := db.Select(ctx, &all, "SELECT id, title, n FROM notes ORDER BY id"); err != nil || len(all) != 2 || all[1].Title != "second" {
		t.Fatalf("Select = %+v, %v", all, err)
	}
	rows, err := db.Query(ctx, "SELECT id, title, n FROM notes ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for rows.Next() {
		var n note
		if err := rows.StructScan(&n); err != nil {
			t.Fatal(err)
		}
		count++
	}
	if err := rows.Close(); err != nil || count != 2 {
		t.Fatalf("Query: %d rows, %v", count, err)
	}

	txSuite(t, db, ctx)

	var locked string
	if db.Driver() == readmodel.DriverMySQL { // SQLite has no FOR UPDATE
		if err := db.Get(ctx, &locked, "SELECT title FROM notes WHERE id = ? FOR UPDATE", 1); err != nil || locked != "first" {
			t.Fatalf("SELECT ... FOR UPDATE: %q, %v", locked, err)
		}
	}
	if err := db.Writer().GetContext(ctx, &locked, db.Writer().Rebind("SELECT title FROM notes WHERE id = ?"), 2); err != nil || locked != "second" {
		t.Fatalf("Writer(): %q, %v", locked, err)
	}
	if db.Reader(ctx) == nil {
		t.Fatal("Reader() is nil")
	}

	_, err = db.Exec(ctx, "INSERT INTO no_such_table VALUES (1)")
	if err == nil || !strings.Contains(err.Error(), "readmodel: primary") {
		t.Fatalf("a failing write: %v, want an error naming the primary", err)
	}
	err = db.Get(ctx, &got, "SELECT nothing FROM no_such_table")
	if err == nil || !strings.HasPrefix(err.Error(), "readmodel: ") {
		t.Fatalf("a failing read: %v, want a wrapped error", err)
	}

	tok := readmodel.Token(ctx)
	if mariadb := db.Driver() == readmodel.DriverMySQL; mariadb != (tok != "") {
		t.Fatalf("Token = %q: want one on MariaDB only", tok)
	}
	if err := db.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if m := db.Members(); len(m) == 0 || m[0].Role != readmodel.RolePrimary || !m[0].Up || !m[0].InPool {
		t.Fatalf("Members = %+v", m)
	}
	migrateTwice(t, db)
}

func txSuite(t *testing.T, db *readmodel.DB, ctx context.Context) {
	t.Helper()
	err := db.Tx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.Exec(tx.Rebind("INSERT INTO notes (title) VALUES (?)"), "in tx"); err != nil {
			return err
		}
		var n int
		if err := tx.Get(&n, "SELECT COUNT(*) FROM notes"); err != nil || n != 3 {
			t.Errorf("inside the tx: %d rows, %v; want 3", n, err)
		}
		return nil
	})
	if err != nil || title(t, db, ctx, 3) != "in tx" {
		t.Fatalf("committed tx: %v, row 3 %q", err, title(t, db, ctx, 3))
	}

	boom := errors.New("boom")
	err = db.Tx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.Exec(tx.Rebind("INSERT INTO notes (title) VALUES (?)"), "rolled back"); err != nil {
			return err
		}
		return boom
	})
	if err != boom {
		t.Fatalf("Tx returned %v, want fn's error as is", err)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("Tx swallowed a panic")
			}
		}()
		_ = db.Tx(ctx, func(tx *sqlx.Tx) error {
			_, _ = tx.Exec(tx.Rebind("INSERT INTO notes (title) VALUES (?)"), "panicked")
			panic("boom")
		})
	}()
	var n int
	if err := db.Get(ctx, &n, "SELECT COUNT(*) FROM notes"); err != nil || n != 3 {
		t.Fatalf("after a rollback and a panic: %d rows, %v; want 3", n, err)
	}
}

// migrateTwice applies a small migration set twice: the second run applies
// nothing.
func migrateTwice(t *testing.T, db *readmodel.DB) {
	t.Helper()
	fsys := fstest.MapFS{
		"sqlite/0001_a.sql": {Data: []byte("CREATE TABLE a (id INTEGER PRIMARY KEY); CREATE TABLE b (id INTEGER PRIMARY KEY);")},
		"sqlite/0002_c.sql": {Data: []byte("-- comment only first\nCREATE TABLE c (id INTEGER PRIMARY KEY)")},
		"mysql/0001_a.sql":  {Data: []byte("CREATE TABLE a (id INT PRIMARY KEY); CREATE TABLE b (id INT PRIMARY KEY);")},
		"mysql/0002_c.sql":  {Data: []byte("-- comment only first\nCREATE TABLE c (id INT PRIMARY KEY)")},
		"mysql/README.md":   {Data: []byte("not a migration")},
	}
	ctx := context.Background()
	applied, err := readmodel.Migrate(ctx, db, fsys)
	if err != nil || strings.Join(applied, ",") != "0001_a.sql,0002_c.sql" {
		t.Fatalf("first Migrate: %v, %v", applied, err)
	}
	applied, err = readmodel.Migrate(ctx, db, fsys)
	if err != nil || len(applied) != 0 {
		t.Fatalf("second Migrate: %v, %v; want nothing applied", applied, err)
	}
	var n int
	if err := db.Get(readmodel.UsePrimary(ctx), &n, "SELECT COUNT(*) FROM schema_migrations"); err != nil || n != 2 {
		t.Fatalf("schema_migrations has %d rows (%v), want 2", n, err)
	}
}
