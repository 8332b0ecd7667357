package readmodel_test

import (
	"context"
	"strings"
	"testing"
)

// SQLite reads run as prepared statements kept per query text: the same
// query keeps answering after the schema changes under it, a query that
// does not prepare still reports its own error, and every distinct query
// text gets its own statement.
func TestSQLiteReadsThroughCachedStatements(t *testing.T) {
	db := openSQLite(t)
	ctx := context.Background()
	if _, err := db.Writer().ExecContext(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Writer().ExecContext(ctx, `INSERT INTO t (id, name) VALUES (1, 'a'), (2, 'b')`); err != nil {
		t.Fatal(err)
	}
	const q = `SELECT * FROM t WHERE id = ?`
	type row struct {
		ID   int
		Name string
		Note *string
	}
	for i := range 3 {
		var r row
		if err := db.Get(ctx, &r, q, 1+i%2); err != nil || r.ID != 1+i%2 {
			t.Fatalf("read %d: %+v %v", i, r, err)
		}
	}
	if _, err := db.Writer().ExecContext(ctx, `ALTER TABLE t ADD COLUMN note TEXT`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Writer().ExecContext(ctx, `UPDATE t SET note = 'new' WHERE id = 2`); err != nil {
		t.Fatal(err)
	}
	var r row
	if err := db.Get(ctx, &r, q, 2); err != nil || r.Note == nil || *r.Note != "new" {
		t.Fatalf("after ALTER TABLE: %+v %v, want the new column", r, err)
	}
	var rows []row
	if err := db.Select(ctx, &rows, `SELECT * FROM t ORDER BY id`); err != nil || len(rows) != 2 {
		t.Fatalf("select: %+v %v", rows, err)
	}
	err := db.Get(ctx, &r, `SELECT * FROM missing WHERE id = ?`, 1)
	if err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("query of a missing table = %v, want its error naming the table", err)
	}
}
