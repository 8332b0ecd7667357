package readmodel_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/jetfleet/jetfleet/readmodel"
)

// TestANewSQLiteFileIsItsOwnersAlone: the read model's data (users, items,
// the outbox) is not for other accounts on the machine: a database file
// Open creates, and its WAL and shared-memory files, are mode 0600, like
// the NATS store's directory and credentials beside it.
func TestANewSQLiteFileIsItsOwnersAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	db := open(t, readmodel.Config{Database: path})
	ctx := context.Background()
	if _, err := db.Exec(ctx, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "INSERT INTO notes (body) VALUES ('private')"); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if mode := fi.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s has mode %o, want 600", filepath.Base(p), mode)
		}
	}
}
