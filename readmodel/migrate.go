package readmodel

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// migration is one numbered .sql file.
type migration struct {
	version int64
	name    string
	sql     string
}

// Migrate applies, on the primary, the migrations in fsys that the database
// has not recorded yet, and returns the names of the files it applied, in
// order. fsys holds one directory per dialect, "sqlite" and "mysql", of
// files named like 0001_init.sql; the leading number is the version, applied
// in ascending order and recorded in the table schema_migrations. Files are
// split into statements at semicolons (quotes and comments respected; no
// DELIMITER or compound statements).
//
// It is safe to run from several processes at once: each migration is
// applied once. MySQL/MariaDB: the processes take turns under GET_LOCK; as
// MySQL commits DDL as it goes, a migration that fails halfway leaves its
// earlier statements applied, so write them to be re-runnable (IF NOT
// EXISTS). SQLite: everything runs in one BEGIN IMMEDIATE transaction, so a
// failure applies nothing.
func Migrate(ctx context.Context, db *DB, fsys fs.FS) ([]string, error) {
	return migrate(ctx, db, source{fsys: fsys, table: appVersions})
}

// MigrateAll applies jetfleet's own tables (the outbox of MigrateOutbox)
// and then the application's migrations in fsys (as Migrate does), under
// one lock, so that of several processes running it at once exactly one
// applies each file. jetfleet's files are named "jetfleet/<file>" in what
// it returns. Package node's `migrate` runs it.
func MigrateAll(ctx context.Context, db *DB, fsys fs.FS) ([]string, error) {
	own, err := outboxSource()
	if err != nil {
		return nil, err
	}
	return migrate(ctx, db, own, source{fsys: fsys, table: appVersions})
}

// versionTable is where a set of migrations records what it applied: the
// application's in schema_migrations, jetfleet's own (MigrateOutbox) in
// jetfleet_schema_migrations, so their version numbers never collide.
type versionTable string

const (
	appVersions      versionTable = "schema_migrations"
	jetfleetVersions versionTable = "jetfleet_schema_migrations"
)

// source is one set of migrations: its files, where it records them, and
// the prefix of their names in what Migrate returns.
type source struct {
	fsys   fs.FS
	table  versionTable
	prefix string
	ms     []migration
}

func migrate(ctx context.Context, db *DB, sources ...source) ([]string, error) {
	if db.primary.readOnly.Load() {
		return nil, fmt.Errorf("readmodel: migrate: primary %s has @@read_only ON: %w", db.primary.addr, ErrReadOnly)
	}
	for i := range sources {
		if sources[i].fsys == nil {
			return nil, errors.New("readmodel: migrate: no migrations (fsys is nil)")
		}
		ms, err := loadMigrations(sources[i].fsys, db.Driver())
		if err != nil {
			return nil, err
		}
		sources[i].ms = ms
	}
	c, err := db.Writer().Connx(ctx)
	if err != nil {
		return nil, wrapErr(db.primary, err)
	}
	defer c.Close()
	var applied []string
	if db.Driver() == DriverSQLite {
		applied, err = migrateSQLite(ctx, c, sources)
	} else {
		applied, err = migrateMySQL(ctx, c, sources)
	}
	return applied, wrapErr(db.primary, err)
}

// applyAll applies each source's pending migrations in turn.
func applyAll(ctx context.Context, c *sqlx.Conn, dialect string, sources []source) ([]string, error) {
	var applied []string
	for _, src := range sources {
		names, err := applyPending(ctx, c, src.table, dialect, src.ms)
		for _, n := range names {
			applied = append(applied, src.prefix+n)
		}
		if err != nil {
			return applied, err
		}
	}
	return applied, nil
}

// loadMigrations reads fsys/dialect/*.sql, sorted by version.
func loadMigrations(fsys fs.FS, dialect string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dialect)
	if err != nil {
		return nil, fmt.Errorf("readmodel: migrations for %s: %w", dialect, err)
	}
	var ms []migration
	seen := map[int64]string{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		digits := len(e.Name()) - len(strings.TrimLeft(e.Name(), "0123456789"))
		v, err := strconv.ParseInt(e.Name()[:digits], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("readmodel: migration %s/%s: the name must start with its version number, like 0001_init.sql", dialect, e.Name())
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("readmodel: migrations %s and %s share version %d", other, e.Name(), v)
		}
		seen[v] = e.Name()
		b, err := fs.ReadFile(fsys, path.Join(dialect, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("readmodel: migration %s: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// createVersionTable is the statement that creates table in dialect.
func createVersionTable(table versionTable, dialect string) string {
	if dialect == DriverSQLite {
		return `CREATE TABLE IF NOT EXISTS ` + string(table) + ` (
  version INTEGER NOT NULL PRIMARY KEY,
  name TEXT NOT NULL,
  applied_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP
)`
	}
	return `CREATE TABLE IF NOT EXISTS ` + string(table) + ` (
  version BIGINT NOT NULL PRIMARY KEY,
  name VARCHAR(255) NOT NULL,
  applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
)`
}

// migrateMySQL applies the sources under a named lock held by connection c.
func migrateMySQL(ctx context.Context, c *sqlx.Conn, sources []source) (applied []string, err error) {
	const lock = "LEFT(CONCAT('schema_migrations.', IFNULL(DATABASE(), '')), 64)" // lock names are at most 64 characters
	wait := 600.0
	if dl, ok := ctx.Deadline(); ok {
		wait = time.Until(dl).Seconds()
	}
	var got sql.NullInt64
	if err := c.QueryRowContext(ctx, "SELECT GET_LOCK("+lock+", ?)", wait).Scan(&got); err != nil {
		return nil, fmt.Errorf("take the migration lock: %w", err)
	}
	if !got.Valid || got.Int64 != 1 {
		return nil, fmt.Errorf("take the migration lock: another process held it for %.0fs", wait)
	}
	defer func() {
		_, rerr := c.ExecContext(context.WithoutCancel(ctx), "DO RELEASE_LOCK("+lock+")")
		err = errors.Join(err, rerr)
	}()
	return applyAll(ctx, c, DriverMySQL, sources)
}

// migrateSQLite applies ms in one transaction that takes the database's
// write lock first, waiting (busy timeout, then retries) for other writers.
func migrateSQLite(ctx context.Context, c *sqlx.Conn, sources []source) (applied []string, err error) {
	for {
		_, err = c.ExecContext(ctx, "BEGIN IMMEDIATE")
		if err == nil {
			break
		}
		if !isSQLiteBusy(err) {
			return nil, fmt.Errorf("take the write lock: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("take the write lock: %w (%w)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	applied, err = applyAll(ctx, c, DriverSQLite, sources)
	if err != nil {
		_, rerr := c.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		return nil, errors.Join(err, rerr)
	}
	if _, err := c.ExecContext(ctx, "COMMIT"); err != nil {
		return nil, fmt.Errorf("commit migrations: %w", err)
	}
	return applied, nil
}

func isSQLiteBusy(err error) bool {
	var coder interface{ Code() int }
	return errors.As(err, &coder) && coder.Code()&0xff == 5 // SQLITE_BUSY
}

// applyPending creates the version table if needed and applies, in order,
// every migration it does not list.
func applyPending(ctx context.Context, c *sqlx.Conn, table versionTable, dialect string, ms []migration) ([]string, error) {
	if _, err := c.ExecContext(ctx, createVersionTable(table, dialect)); err != nil {
		return nil, fmt.Errorf("create %s: %w", table, err)
	}
	var done []int64
	if err := c.SelectContext(ctx, &done, "SELECT version FROM "+string(table)); err != nil {
		return nil, fmt.Errorf("read %s: %w", table, err)
	}
	have := make(map[int64]bool, len(done))
	for _, v := range done {
		have[v] = true
	}
	var applied []string
	for _, m := range ms {
		if have[m.version] {
			continue
		}
		for i, stmt := range splitSQL(m.sql) {
			if _, err := c.ExecContext(ctx, stmt); err != nil {
				return applied, fmt.Errorf("migration %s, statement %d: %w", m.name, i+1, err)
			}
		}
		if _, err := c.ExecContext(ctx, "INSERT INTO "+string(table)+" (version, name) VALUES (?, ?)", m.version, m.name); err != nil {
			return applied, fmt.Errorf("record migration %s: %w", m.name, err)
		}
		applied = append(applied, m.name)
	}
	return applied, nil
}

// splitSQL splits a script into statements at semicolons outside quotes and
// comments, dropping empty and comment-only statements.
func splitSQL(script string) []string {
	var out []string
	start := 0
	flush := func(end int) {
		if s := strings.TrimSpace(script[start:end]); hasCode(s) {
			out = append(out, s)
		}
	}
	for i := 0; i < len(script); {
		c := script[i]
		switch {
		case c == '\'' || c == '"' || c == '`':
			i = skipQuoted(script, i)
		case c == '#' || (c == '-' && i+1 < len(script) && script[i+1] == '-'):
			i = skipLine(script, i)
		case c == '/' && i+1 < len(script) && script[i+1] == '*':
			i = skipBlock(script, i)
		case c == ';':
			flush(i)
			i++
			start = i
		default:
			i++
		}
	}
	flush(len(script))
	return out
}

// hasCode reports whether s holds anything but whitespace and comments.
func hasCode(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#' || (c == '-' && i+1 < len(s) && s[i+1] == '-'):
			i = skipLine(s, i)
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			i = skipBlock(s, i)
		default:
			return true
		}
	}
	return false
}
