package readmodel

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"
)

// Role is a member's part in the pool.
type Role string

// Roles.
const (
	RolePrimary Role = "primary"
	RoleReplica Role = "replica"
)

// DB routes queries between a primary and its replicas (or to one SQLite
// file). It is safe for concurrent use; open one per process and Close it.
type DB struct {
	cfg      Config
	log      zerolog.Logger
	primary  *member
	replicas []*member
	pool     atomic.Pointer[[]*member] // the replicas in the read pool now
	poolMu   sync.Mutex                // serializes rebuilds of pool
	rr       atomic.Uint64
	mariadb  atomic.Bool // the primary is MariaDB: writes in a scope capture @@last_gtid

	history []posSample // the primary's positions over time; health checker only
	kick    chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}
	tracer  trace.Tracer // nil: tracing off (tracing.go)
}

// member is one server (or the SQLite file).
type member struct {
	addr     string
	role     Role
	db       *sqlx.DB   // queries
	health   *sqlx.DB   // health checks, so a saturated pool cannot fail them
	stmts    *stmtCache // SQLite: prepared read statements; nil for MySQL
	inPool   atomic.Bool
	readOnly atomic.Bool
	applied  atomic.Pointer[gtidSet] // replica: position it is known to have applied
	slowTill atomic.Int64            // replica: Unix ns until which a slow read keeps it out (slowread.go)

	mu    sync.Mutex
	state MemberState
}

// Driver is DriverSQLite or DriverMySQL: which SQL dialect to write.
func (d *DB) Driver() string { return d.cfg.Driver }

// Writer is the primary's own *sqlx.DB, for what the methods here do not
// cover. Writes through it are not recorded in a Sticky scope.
func (d *DB) Writer() *sqlx.DB { return d.primary.db }

// Reader is the *sqlx.DB that a read in ctx would use now: a healthy
// replica, or the primary (see DB.Get for the rules). Reads through it are
// not retried elsewhere; on a replica, ReplicaReadTimeout still bounds them.
func (d *DB) Reader(ctx context.Context) *sqlx.DB {
	m, _ := d.reader(ctx, "")
	return m.db
}

// Get runs a single-row read into dest (sqlx.Get) on the member chosen for
// ctx: a healthy replica, balanced round-robin, unless ctx is in a Sticky
// scope that wrote, was marked with UsePrimary, carries a token that no
// replica has reached in time, or no replica is healthy; then the primary.
// A query that is not a plain read (SELECT ... FOR UPDATE / FOR SHARE /
// LOCK IN SHARE MODE, or a statement that is not SELECT, WITH, SHOW,
// EXPLAIN, DESCRIBE or VALUES) goes to the primary. A read on a replica
// that fails because the server or the connection failed (not because of
// the statement) is tried once more, on another replica or the primary
// (the primary when ctx carries a token), and the replica leaves the pool
// until a health check finds it fine. A replica that sends nothing for
// Config.ReplicaReadTimeout fails the read that way; it is run again on the
// primary, and the replica leaves the pool for 30 health checks.
// sql.ErrNoRows comes back as is; other errors are wrapped with the
// member's role and address.
func (d *DB) Get(ctx context.Context, dest any, query string, args ...any) error {
	return d.read(ctx, query, func(m *member) error {
		if st := m.stmts.stmt(ctx, query); st != nil {
			return st.GetContext(ctx, dest, args...)
		}
		return m.db.GetContext(ctx, dest, query, args...)
	})
}

// Select runs a read into the slice dest (sqlx.Select), routed like Get.
// The slice is emptied first, so a retry does not keep a failed attempt's
// rows.
func (d *DB) Select(ctx context.Context, dest any, query string, args ...any) error {
	return d.read(ctx, query, func(m *member) error {
		truncate(dest) // a retry must not append to a failed attempt's rows
		if st := m.stmts.stmt(ctx, query); st != nil {
			return st.SelectContext(ctx, dest, args...)
		}
		return m.db.SelectContext(ctx, dest, query, args...)
	})
}

// Query runs a read and returns its rows, routed like Get. Only a failure
// to start the query is retried elsewhere; the caller closes the rows.
func (d *DB) Query(ctx context.Context, query string, args ...any) (*sqlx.Rows, error) {
	var rows *sqlx.Rows
	err := d.read(ctx, query, func(m *member) (err error) {
		rows, err = m.db.QueryxContext(ctx, query, args...)
		return err
	})
	return rows, err
}

func truncate(dest any) {
	v := reflect.ValueOf(dest)
	if v.Kind() == reflect.Pointer && !v.IsNil() && v.Elem().Kind() == reflect.Slice {
		v.Elem().SetLen(0)
	}
}

// read runs fn on the member chosen for the read and, if the member failed
// (not the statement) or was too slow, once more on another one.
func (d *DB) read(ctx context.Context, query string, fn func(*member) error) (err error) {
	span := d.startQuery(ctx, query)
	defer func() { span.end(err) }()
	m, why := d.reader(ctx, query)
	span.routed(m, why)
	d.observeRead(m, why)
	start := time.Now()
	err = fn(m)
	// A read meant for the primary (sticky, marked, locking, or no replica
	// in the pool) stays there: database/sql already retried a bad
	// connection, and a replica could miss the writes it must see.
	if err == nil || m == d.primary || ctx.Err() != nil || !isConnError(err) {
		return wrapErr(m, err)
	}
	alt := d.primary // a slow read, or one with a token, goes to the primary
	if d.tooSlow(start) {
		err = d.shun(m, err)
	} else {
		d.suspect(m, err)
		if r := routingFrom(ctx); r == nil || len(r.causalToken()) == 0 {
			if other := d.pickReplica(m); other != nil {
				alt = other
			}
		}
	}
	d.log.Debug().Str("failed", m.addr).Str("retry", alt.addr).Err(err).Msg("readmodel: read retried on another member")
	d.observeRead(alt, ReadRetried)
	span.retried(m, alt, err)
	return wrapErr(alt, fn(alt))
}

// reader picks the member for a read of query ("" for any read) in ctx,
// and says why.
func (d *DB) reader(ctx context.Context, query string) (*member, ReadReason) {
	if len(d.replicas) == 0 {
		return d.primary, ReadNoReplica
	}
	if query != "" && !isPlainRead(query) {
		return d.primary, ReadNotPlain
	}
	if r := routingFrom(ctx); r != nil {
		if r.primary {
			return d.primary, ReadMarked
		}
		if !d.cfg.NoSticky && r.scope != nil && r.scope.wrote.Load() {
			return d.primary, ReadSticky
		}
		if tok := r.causalToken(); len(tok) > 0 {
			if m := d.causalReplica(ctx, tok); m != d.primary {
				return m, ReadCausal
			}
			return d.primary, ReadTokenFallback
		}
	}
	if m := d.pickReplica(nil); m != nil {
		return m, ReadBalanced
	}
	return d.primary, ReadNoReplica
}

// pickReplica returns the next replica in the pool, round-robin, other than
// except; nil when there is none.
func (d *DB) pickReplica(except *member) *member {
	p := d.pool.Load()
	if p == nil || len(*p) == 0 {
		return nil
	}
	pool := *p
	n := uint64(len(pool))
	start := d.rr.Add(1)
	for i := range n {
		if m := pool[(start+i)%n]; m != except {
			return m
		}
	}
	return nil
}

// rebuildPool lists the replicas whose inPool flag is set, for pickReplica.
func (d *DB) rebuildPool() {
	d.poolMu.Lock()
	defer d.poolMu.Unlock()
	pool := make([]*member, 0, len(d.replicas))
	for _, m := range d.replicas {
		if m.inPool.Load() {
			pool = append(pool, m)
		}
	}
	d.pool.Store(&pool)
}

// causalReplica returns a replica in the pool that has applied tok: one
// known to have, else one that gets there within CausalWait, else the
// primary.
func (d *DB) causalReplica(ctx context.Context, tok gtidSet) *member {
	if p := d.pool.Load(); p != nil {
		pool := *p
		n := uint64(len(pool))
		start := d.rr.Add(1)
		for i := range n {
			if m := pool[(start+i)%n]; m.appliedPos().reached(tok) {
				return m
			}
		}
	}
	if m := d.pickReplica(nil); m != nil && d.waitFor(ctx, m, tok) {
		return m
	}
	return d.primary
}

// waitFor waits up to CausalWait for replica m to apply tok.
func (d *DB) waitFor(ctx context.Context, m *member, tok gtidSet) bool {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.CausalWait+d.cfg.DialTimeout)
	defer cancel()
	var res sql.NullInt64
	err := m.db.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, ?)", tok.String(), d.cfg.CausalWait.Seconds()).Scan(&res)
	if err != nil || !res.Valid || res.Int64 != 0 {
		return false
	}
	m.advance(tok)
	return true
}

func (m *member) appliedPos() gtidSet {
	if p := m.applied.Load(); p != nil {
		return *p
	}
	return nil
}

// advance records that m has applied tok.
func (m *member) advance(tok gtidSet) {
	for {
		old := m.applied.Load()
		var cur gtidSet
		if old != nil {
			cur = *old
		}
		next := cur.merge(tok)
		if m.applied.CompareAndSwap(old, &next) {
			return
		}
	}
}

// execer is what a write runs on: the primary's pool or one connection.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	BeginTxx(ctx context.Context, opts *sql.TxOptions) (*sqlx.Tx, error)
}

// Exec runs a write on the primary. In a Sticky scope it marks the scope as
// having written and, on MariaDB, adds the write's GTID to the scope's
// token. A write is never retried. If the primary is read-only the error
// wraps ErrReadOnly.
func (d *DB) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := d.write(ctx, query, func(e execer) (err error) {
		res, err = e.ExecContext(ctx, query, args...)
		return err
	})
	return res, err
}

// NamedExec is Exec with sqlx named parameters (:name) bound from arg, a
// struct or map.
func (d *DB) NamedExec(ctx context.Context, query string, arg any) (sql.Result, error) {
	q, args, err := d.primary.db.BindNamed(query, arg)
	if err != nil {
		return nil, fmt.Errorf("readmodel: %w", err)
	}
	return d.Exec(ctx, q, args...)
}

// Tx runs fn in a transaction on the primary (with SQLite, BEGIN IMMEDIATE)
// and commits it when fn returns nil; it rolls back when fn returns an
// error (returned as is) or panics (re-panicked). Reads inside fn use tx
// and so see the transaction's writes. It is recorded in a Sticky scope
// like Exec.
func (d *DB) Tx(ctx context.Context, fn func(tx *sqlx.Tx) error) error {
	var fnErr error
	err := d.write(ctx, "", func(e execer) error {
		tx, err := e.BeginTxx(ctx, nil)
		if err != nil {
			return err
		}
		defer func() {
			if p := recover(); p != nil {
				_ = tx.Rollback()
				panic(p)
			}
		}()
		if fnErr = fn(tx); fnErr != nil {
			_ = tx.Rollback()
			return fnErr
		}
		return tx.Commit()
	})
	if fnErr != nil {
		return fnErr
	}
	return err
}

// write runs fn on the primary and records it in ctx's scope; query names
// its span ("" for a transaction).
func (d *DB) write(ctx context.Context, query string, fn func(execer) error) (err error) {
	span := d.startQuery(ctx, query)
	defer func() { span.end(err) }()
	p := d.primary
	span.routed(p, "")
	if p.readOnly.Load() {
		return fmt.Errorf("readmodel: refusing to write to %s: its @@read_only is ON (is DB_WRITE_HOST a replica?): %w", p.addr, ErrReadOnly)
	}
	r := routingFrom(ctx)
	if r == nil || r.scope == nil {
		return wrapErr(p, fn(p.db))
	}
	if !d.mariadb.Load() {
		err := fn(p.db)
		r.scope.recordWrite(nil)
		return wrapErr(p, err)
	}
	// MariaDB: read @@last_gtid on the connection that wrote.
	c, err := p.db.Connx(ctx)
	if err != nil {
		return wrapErr(p, err)
	}
	defer c.Close()
	err = fn(c)
	var tok gtidSet
	if err == nil {
		tok = d.lastGTID(ctx, c)
	}
	r.scope.recordWrite(tok)
	return wrapErr(p, err)
}

// lastGTID is the GTID of the last transaction written on c, or nil.
func (d *DB) lastGTID(ctx context.Context, c *sqlx.Conn) gtidSet {
	var s string
	if err := c.QueryRowContext(ctx, "SELECT @@last_gtid").Scan(&s); err != nil {
		d.log.Warn().Err(err).Msg("readmodel: cannot read @@last_gtid; this write gets no causal token")
		return nil
	}
	set, err := parseGTIDSet(s)
	if err != nil {
		d.log.Warn().Err(err).Msg("readmodel: unexpected @@last_gtid")
		return nil
	}
	return set
}
