package readmodel_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jetfleet/jetfleet/examples/catalog/catalog/migrations"
	"github.com/jetfleet/jetfleet/readmodel"
)

// TestMigrateConcurrentProcesses runs `jetfleet migrate` from 3 processes at
// once, on MariaDB and on one SQLite file: the schema is applied once (one
// process applies it, the others find nothing to do), and every table of
// the reference app exists (on MariaDB, on the replica too).
func TestMigrateConcurrentProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the jetfleet binary")
	}
	bin := buildJetfleet(t)
	t.Run("sqlite", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "shared.db")
		runMigrations(t, bin, dir, []string{"DB_DATABASE=" + path})
		checkSchema(t, openDB(t, readmodel.Config{Database: path}))
	})
	t.Run("mariadb", func(t *testing.T) {
		p := mariaPair(t)
		name := p.NewDatabase(t)
		runMigrations(t, bin, t.TempDir(), p.Env(name))
		db := openDB(t, mariaConfig(t, p, name))
		checkSchema(t, db)
		syncReplica(t, p)
		var n int
		if err := db.Get(context.Background(), &n, "SELECT COUNT(*) FROM item_images"); err != nil {
			t.Fatalf("the replica lacks the schema: %v", err)
		}
	})
}

// buildJetfleet builds ./cmd/jetfleet into a temporary directory.
func buildJetfleet(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "jetfleet")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/jetfleet/jetfleet/cmd/jetfleet")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/jetfleet: %v\n%s", err, out)
	}
	return bin
}

// runMigrations starts 3 `jetfleet migrate` processes together and checks
// that exactly one applied the schema.
func runMigrations(t *testing.T, bin, dir string, env []string) {
	t.Helper()
	var wg sync.WaitGroup
	outs := make([]string, 3)
	for i := range outs {
		wg.Go(func() {
			cmd := exec.Command(bin, "migrate")
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), append(env, "JETFLEET_DATA="+dir, "LOG_LEVEL=warn")...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				t.Errorf("jetfleet migrate #%d: %v\n%s", i, err, out.String())
			}
			outs[i] = out.String()
		})
	}
	wg.Wait()
	all := strings.Join(outs, "")
	if n := strings.Count(all, "applied 0001_init.sql"); n != 1 {
		t.Fatalf("0001_init.sql applied %d times:\n%s", n, all)
	}
	if n := strings.Count(all, "nothing to apply"); n != 2 {
		t.Fatalf("%d processes found nothing to do, want 2:\n%s", n, all)
	}
}

func openDB(t *testing.T, cfg readmodel.Config) *readmodel.DB { return open(t, cfg) }

// checkSchema checks the version table and the reference app's tables.
func checkSchema(t *testing.T, db *readmodel.DB) {
	t.Helper()
	ctx := readmodel.UsePrimary(context.Background())
	files, err := fs.Glob(migrations.FS, "sqlite/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("the catalog's migrations: %v %v", files, err)
	}
	var want []int64
	for i := range files {
		want = append(want, int64(i+1))
	}
	var versions []int64
	if err := db.Select(ctx, &versions, "SELECT version FROM schema_migrations ORDER BY version"); err != nil || !slices.Equal(versions, want) {
		t.Fatalf("schema_migrations = %v (%v), want %v (one per file)", versions, err, want)
	}
	for _, table := range []string{"users", "items", "item_images", "outbox"} {
		var n int
		if err := db.Get(ctx, &n, "SELECT COUNT(*) FROM "+table); err != nil {
			t.Fatalf("table %s: %v", table, err)
		}
	}
	// The schema works as the reference app will use it.
	w := readmodel.Sticky(context.Background())
	res := mustExec(t, db, w, "INSERT INTO users (name) VALUES (?)", "ann")
	uid, _ := res.LastInsertId()
	res = mustExec(t, db, w, "INSERT INTO items (user_id, name, description) VALUES (?, ?, ?)", uid, "lamp", "brass")
	iid, _ := res.LastInsertId()
	for _, size := range []int{0, 160, 640} {
		mustExec(t, db, w, "INSERT INTO item_images (item_id, name, size, object_name, width, height, content_type) VALUES (?, ?, ?, ?, ?, ?, ?)",
			iid, "photo.jpg", size, "items/1/photo.jpg", size, size, "image/jpeg")
	}
	if _, err := db.Exec(w, "INSERT INTO item_images (item_id, name, size, object_name) VALUES (?, 'photo.jpg', 160, 'x')", iid); err == nil {
		t.Fatal("a second (item, name, size) image was accepted")
	}
	if _, err := db.Exec(w, "INSERT INTO users (name) VALUES (?)", "ann"); err == nil {
		t.Fatal("a second user named ann was accepted")
	}
	mustExec(t, db, w, "INSERT INTO outbox (kind, recipient, body) VALUES ('mail', 'ann@example.com', 'hi')")
	var created time.Time
	if err := db.Get(w, &created, "SELECT created_at FROM items WHERE id = ?", iid); err != nil || time.Since(created) > time.Hour || time.Since(created) < -time.Hour {
		t.Fatalf("items.created_at = %v (%v): want a time.Time of now", created, err)
	}
}

// TestMigrateConcurrentGoroutines: 3 DBs (as in 3 processes) migrate at the
// same time; each migration is applied once.
func TestMigrateConcurrentGoroutines(t *testing.T) {
	fsys := fstest.MapFS{
		"sqlite/0001_a.sql": {Data: []byte("CREATE TABLE a (id INTEGER PRIMARY KEY)")},
		"sqlite/0002_b.sql": {Data: []byte("CREATE TABLE b (id INTEGER PRIMARY KEY); INSERT INTO b VALUES (1)")},
		"mysql/0001_a.sql":  {Data: []byte("CREATE TABLE a (id INT PRIMARY KEY)")},
		"mysql/0002_b.sql":  {Data: []byte("CREATE TABLE b (id INT PRIMARY KEY); INSERT INTO b VALUES (1)")},
	}
	run := func(t *testing.T, cfg readmodel.Config) {
		dbs := []*readmodel.DB{open(t, cfg), open(t, cfg), open(t, cfg)}
		var mu sync.Mutex
		var applied []string
		var wg sync.WaitGroup
		for _, db := range dbs {
			wg.Go(func() {
				names, err := readmodel.Migrate(context.Background(), db, fsys)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				applied = append(applied, names...)
				mu.Unlock()
			})
		}
		wg.Wait()
		if len(applied) != 2 {
			t.Fatalf("applied %v, want each of the 2 migrations once", applied)
		}
		var n int
		if err := dbs[0].Get(readmodel.UsePrimary(context.Background()), &n, "SELECT COUNT(*) FROM b"); err != nil || n != 1 {
			t.Fatalf("b has %d rows (%v), want 1", n, err)
		}
	}
	t.Run("sqlite", func(t *testing.T) { run(t, readmodel.Config{Database: filepath.Join(t.TempDir(), "m.db")}) })
	t.Run("mariadb", func(t *testing.T) {
		p := mariaPair(t)
		run(t, mariaConfig(t, p, p.NewDatabase(t)))
	})
}

// TestMigrateBadFiles: a misnamed or failing migration is a clear error.
func TestMigrateBadFiles(t *testing.T) {
	db := openSQLite(t)
	ctx := context.Background()
	for name, fsys := range map[string]fstest.MapFS{
		"must start with its version": {"sqlite/init.sql": {Data: []byte("SELECT 1")}},
		"share version 1":             {"sqlite/1_a.sql": {Data: []byte("SELECT 1")}, "sqlite/01_b.sql": {Data: []byte("SELECT 1")}},
		"0001_bad.sql, statement 2":   {"sqlite/0001_bad.sql": {Data: []byte("CREATE TABLE ok (id INT); CREATE TABLE (")}},
		"migrations for sqlite":       {"mysql/0001_a.sql": {Data: []byte("SELECT 1")}},
	} {
		if _, err := readmodel.Migrate(ctx, db, fsys); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("Migrate: %v, want an error saying %q", err, name)
		}
	}
	// The failed migration left nothing behind (SQLite: one transaction).
	var n int
	if err := db.Get(ctx, &n, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'ok'"); err != nil || n != 0 {
		t.Fatalf("a failed migration left table ok behind (%d, %v)", n, err)
	}
	if _, err := readmodel.Migrate(ctx, db, migrations.FS); err != nil {
		t.Fatalf("the reference app's migrations: %v", err)
	}
}
