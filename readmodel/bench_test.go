package readmodel_test

import (
	"context"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/jetfleet/jetfleet/readmodel"
)

// BenchmarkGet measures the router's overhead: the same single-row Get
// through readmodel and on a bare *sqlx.DB to the same server, in the same
// run. On MariaDB both go to the replica (readmodel picks it); on SQLite
// both read the same file.
func BenchmarkGet(b *testing.B) {
	b.Run("mariadb", func(b *testing.B) {
		db, p, name := openMaria(b, nil)
		noteTable(b, db)
		mustExec(b, db, context.Background(), "INSERT INTO notes (title) VALUES ('bench')")
		syncReplica(b, p)
		bare, err := sqlx.Open("mysql", p.ReplicaDSN(name)+"&interpolateParams=true")
		if err != nil {
			b.Fatal(err)
		}
		defer bare.Close()
		benchPair(b, db, bare)
	})
	b.Run("sqlite", func(b *testing.B) {
		db := openSQLite(b)
		noteTable(b, db)
		mustExec(b, db, context.Background(), "INSERT INTO notes (title) VALUES ('bench')")
		benchPair(b, db, db.Writer())
	})
}

func benchPair(b *testing.B, db *readmodel.DB, bare *sqlx.DB) {
	const q = "SELECT id, title, n FROM notes WHERE id = ?"
	ctx := context.Background()
	b.Run("readmodel", func(b *testing.B) {
		var n note
		for b.Loop() {
			if err := db.Get(ctx, &n, q, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sqlx", func(b *testing.B) {
		var n note
		for b.Loop() {
			if err := bare.GetContext(ctx, &n, q, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	// paired alternates the two, call by call, so that load from anything
	// else on the machine hits both alike, and reports the difference.
	b.Run("paired", func(b *testing.B) {
		var n note
		var viaRouter, viaBare time.Duration
		get := []func() (*time.Duration, error){
			func() (*time.Duration, error) { return &viaRouter, db.Get(ctx, &n, q, 1) },
			func() (*time.Duration, error) { return &viaBare, bare.GetContext(ctx, &n, q, 1) },
		}
		i := 0
		for b.Loop() {
			for k := range 2 {
				start := time.Now()
				d, err := get[(i+k)%2]()
				*d += time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
			}
			i++
		}
		per := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / float64(i) }
		b.ReportMetric(per(viaRouter), "readmodel-ns/get")
		b.ReportMetric(per(viaBare), "sqlx-ns/get")
		b.ReportMetric(per(viaRouter-viaBare), "overhead-ns/get")
		b.ReportMetric(100*float64(viaRouter-viaBare)/float64(viaBare), "overhead-%")
	})
}
