package readmodel_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetfleet/jetfleet/readmodel"
)

// TestSQLiteFileIsBounded: with SQLiteMaxBytes (DB_SQLITE_MAX_MB) a write
// that would grow the file past the bound fails, IsFull reports it, and
// what was written before stays readable; a smaller write still fits.
func TestSQLiteFileIsBounded(t *testing.T) {
	db := open(t, readmodel.Config{Database: filepath.Join(t.TempDir(), "small.db"), SQLiteMaxBytes: 64 << 10})
	ctx := context.Background()
	if _, err := db.Exec(ctx, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 8<<10)
	var rows int
	var err error
	for ; rows < 100; rows++ {
		if _, err = db.Exec(ctx, "INSERT INTO notes (body) VALUES (?)", big); err != nil {
			break
		}
	}
	if err == nil || !readmodel.IsFull(err) {
		t.Fatalf("100 rows of 8 KiB in a 64 KiB database: %d stored, then %v; want a write refused as full", rows, err)
	}
	var n int
	if err := db.Get(ctx, &n, "SELECT count(*) FROM notes"); err != nil || n != rows {
		t.Fatalf("after the refused write: %d rows, %v; want the %d stored", n, err, rows)
	}
	if readmodel.IsFull(nil) || readmodel.IsFull(context.Canceled) {
		t.Error("IsFull reports other errors as full")
	}
	t.Logf("%d rows of 8 KiB fit in 64 KiB; then: %v", rows, err)
}
