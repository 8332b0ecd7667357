package readmodel

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/bus"
)

// OutboxTable is the table of the after-commit outbox, created by
// MigrateOutbox in the application's own database.
const OutboxTable = "jetfleet_outbox"

// ErrNoOutbox is wrapped when the outbox table does not exist: run the
// service's `migrate` (which applies MigrateOutbox), or MigrateOutbox.
var ErrNoOutbox = errors.New("readmodel: the outbox table " + OutboxTable + " does not exist (run migrate)")

//go:embed outboxschema
var outboxSchema embed.FS

// MigrateOutbox creates the outbox table (OutboxTable) on the primary,
// with the same safety as Migrate, and returns the names of the files it
// applied. Its versions are recorded in jetfleet_schema_migrations, apart
// from the application's schema_migrations. Package node's `migrate`, and
// a node opened with Config.Migrate, run it before the application's
// migrations (MigrateAll).
func MigrateOutbox(ctx context.Context, db *DB) ([]string, error) {
	own, err := outboxSource()
	if err != nil {
		return nil, err
	}
	return migrate(ctx, db, own)
}

// outboxSource is jetfleet's own migrations: the outbox table.
func outboxSource() (source, error) {
	sub, err := fs.Sub(outboxSchema, "outboxschema")
	if err != nil {
		return source{}, fmt.Errorf("readmodel: outbox schema: %w", err)
	}
	return source{fsys: sub, table: jetfleetVersions, prefix: "jetfleet/"}, nil
}

// OutboxConfig tunes an Outbox. Every zero field means its default.
type OutboxConfig struct {
	// Grace is how old a row must be before the relay takes it: younger
	// rows belong to transactions whose own process is still publishing
	// them. Default 5s.
	Grace time.Duration
	// Interval is how often Relay looks for rows left behind. Default 1s.
	Interval time.Duration
	// BatchSize caps the rows one relay round reads. Default 500.
	BatchSize int
	// PublishTimeout bounds the publish that follows a commit and each
	// relay round. Default 10s.
	PublishTimeout time.Duration
	// Logger receives the relay's work and failures. The zero value logs
	// nothing.
	Logger zerolog.Logger
}

func (c OutboxConfig) withDefaults() OutboxConfig {
	setDefaultDuration(&c.Grace, 5*time.Second)
	setDefaultDuration(&c.Interval, time.Second)
	setDefaultDuration(&c.PublishTimeout, 10*time.Second)
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	return c
}

// Outbox dispatches jobs after a transaction commits (Laravel's
// afterCommit, River's InsertTx): a job dispatched with Tx.Dispatch is
// written to OutboxTable by the transaction itself, so it exists if and
// only if the transaction committed. Right after COMMIT, Tx publishes it
// and deletes its row; if the process dies in between, or NATS does not
// answer, Relay (run by every node) publishes what is left, under the
// job's own ID as Nats-Msg-Id, so a row published twice within the JOBS
// duplicate window is stored once. Delivery is at least once, as for every
// job.
//
// On MariaDB each published job carries, in bus.HeaderCausalToken, the
// GTID of its transaction (the relay uses the primary's position, which
// covers it), so its handler reads the transaction's writes from a replica
// that has applied them, or from the primary.
//
// The table holds only jobs not yet published: it is bounded by what the
// application commits while NATS is unreachable. It is safe for
// concurrent use.
type Outbox struct {
	db  *DB
	d   *bus.Dispatcher
	cfg OutboxConfig
	log zerolog.Logger
}

// NewOutbox returns an outbox that writes to db and publishes through d.
func NewOutbox(db *DB, d *bus.Dispatcher, cfg OutboxConfig) (*Outbox, error) {
	if db == nil || d == nil {
		return nil, errors.New("readmodel: NewOutbox needs a DB and a bus.Dispatcher")
	}
	cfg = cfg.withDefaults()
	return &Outbox{db: db, d: d, cfg: cfg, log: cfg.Logger}, nil
}

// Tx is a transaction on the primary in which jobs can be dispatched:
// the embedded *sqlx.Tx runs the application's statements, Dispatch
// records jobs to publish once it commits.
type Tx struct {
	*sqlx.Tx
	o    *Outbox
	rows []outboxRow
}

// outboxRow is one job written by a transaction.
type outboxRow struct {
	id  int64
	job bus.Prepared
}

// Dispatch records a job (as bus.Dispatcher.Dispatch takes it) to be
// published once the transaction commits, and returns its ID. It is
// checked now: bad input is an error wrapping bus.ErrInvalid, and the
// transaction goes on. If the transaction rolls back, the job never
// exists.
func (t *Tx) Dispatch(ctx context.Context, args bus.Args, opts ...bus.Option) (string, error) {
	p, err := t.o.d.Prepare(ctx, args, opts...)
	if err != nil {
		return "", err
	}
	return t.add(ctx, p)
}

// DispatchJSON is Dispatch for a kind and arguments that are already JSON.
func (t *Tx) DispatchJSON(ctx context.Context, kind string, body []byte, opts ...bus.Option) (string, error) {
	p, err := t.o.d.PrepareJSON(ctx, kind, body, opts...)
	if err != nil {
		return "", err
	}
	return t.add(ctx, p)
}

func (t *Tx) add(ctx context.Context, p bus.Prepared) (string, error) {
	h, err := json.Marshal(p.Header)
	if err != nil {
		return "", fmt.Errorf("readmodel: outbox: encode headers: %w", err)
	}
	res, err := t.ExecContext(ctx, "INSERT INTO "+OutboxTable+" (job_id, subject, headers, body, created_ms) VALUES (?, ?, ?, ?, ?)",
		p.ID, p.Subject, string(h), p.Body, time.Now().UnixMilli())
	if err != nil {
		return "", t.o.outboxErr(err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return "", fmt.Errorf("readmodel: outbox: row ID: %w", err)
	}
	t.rows = append(t.rows, outboxRow{id: id, job: p})
	return p.ID, nil
}

// Tx runs fn in a transaction on the primary, as DB.Tx does, and commits
// it when fn returns nil; it rolls back when fn returns an error (returned
// as is) or panics (re-panicked). The jobs fn dispatched are published
// after COMMIT succeeded, before Tx returns; a publish that fails leaves
// them to the relay, and Tx still returns nil: the transaction committed
// and its jobs will be published. A COMMIT that fails is returned; its
// jobs are published later by the relay if, and only if, the commit did
// happen after all (a connection lost during COMMIT). In a Sticky scope
// it counts as a write, a failed COMMIT included.
func (o *Outbox) Tx(ctx context.Context, fn func(tx *Tx) error) error {
	d := o.db
	p := d.primary
	if p.readOnly.Load() {
		return fmt.Errorf("readmodel: refusing to write to %s: its @@read_only is ON (is DB_WRITE_HOST a replica?): %w", p.addr, ErrReadOnly)
	}
	var e execer = p.db
	var conn *sqlx.Conn
	if d.mariadb.Load() { // @@last_gtid is read on the connection that committed
		c, err := p.db.Connx(ctx)
		if err != nil {
			return wrapErr(p, err)
		}
		defer c.Close()
		conn, e = c, c
	}
	t, fnErr, err := o.run(ctx, e, fn)
	if fnErr != nil {
		return fnErr
	}
	r := routingFrom(ctx)
	if err != nil {
		// A COMMIT whose answer was lost may have committed: the scope's
		// reads stay on the primary, as after any write.
		if r != nil && r.scope != nil {
			r.scope.recordWrite(nil)
		}
		return wrapErr(p, err)
	}
	var tok gtidSet
	if conn != nil {
		tok = d.lastGTID(ctx, conn)
	}
	if r != nil && r.scope != nil {
		r.scope.recordWrite(tok)
	}
	if len(t.rows) > 0 {
		o.publishCommitted(ctx, t.rows, tok)
	}
	return nil
}

// run begins a transaction on e, runs fn in it and commits or rolls back.
func (o *Outbox) run(ctx context.Context, e execer, fn func(*Tx) error) (t *Tx, fnErr, err error) {
	tx, err := e.BeginTxx(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
	}()
	t = &Tx{Tx: tx, o: o}
	if fnErr = fn(t); fnErr != nil {
		_ = tx.Rollback()
		return t, fnErr, nil
	}
	return t, nil, tx.Commit()
}

// publishCommitted publishes the jobs of a committed transaction, each
// with the causal token tok added, and deletes the rows of those JetStream
// stored. The rest stay for the relay.
func (o *Outbox) publishCommitted(ctx context.Context, rows []outboxRow, tok gtidSet) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.cfg.PublishTimeout)
	defer cancel()
	if _, err := o.publishRows(ctx, rows, tok); err != nil {
		o.log.Warn().Err(err).Int("jobs", len(rows)).Msg("readmodel: outbox: jobs of a committed transaction are not published yet; the relay will publish them")
	}
}

// publishRows publishes rows with tok merged into their causal token,
// deletes the rows JetStream acknowledged and returns how many those were.
func (o *Outbox) publishRows(ctx context.Context, rows []outboxRow, tok gtidSet) (int, error) {
	jobs := make([]bus.Prepared, len(rows))
	for i, r := range rows {
		jobs[i] = r.job
		mergeTokenHeader(jobs[i].Header, tok)
	}
	pubErr := o.d.PublishPrepared(ctx, jobs...)
	var be *bus.BatchError
	if pubErr != nil && !errors.As(pubErr, &be) {
		return 0, pubErr
	}
	done := make([]int64, 0, len(rows))
	for i, r := range rows {
		if be == nil || be.Errs[i] == nil {
			done = append(done, r.id)
		}
	}
	if err := o.deleteRows(ctx, done); err != nil {
		return len(done), errors.Join(pubErr, err)
	}
	return len(done), pubErr
}

func (o *Outbox) deleteRows(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	q, args, err := sqlx.In("DELETE FROM "+OutboxTable+" WHERE id IN (?)", ids)
	if err != nil {
		return fmt.Errorf("readmodel: outbox: %w", err)
	}
	if _, err := o.db.primary.db.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("%w (deleting published rows: the relay will publish them again, stored once)", o.outboxErr(err))
	}
	return nil
}

// Relay publishes, every Interval until ctx ends, the rows older than
// Grace: jobs of committed transactions whose process died before
// publishing them, or could not reach NATS. Every node runs it (package
// node does); two relays that publish the same row store it once.
func (o *Outbox) Relay(ctx context.Context) {
	t := time.NewTicker(o.cfg.Interval)
	defer t.Stop()
	warnedMissing := false
	var failing int        // rounds failed in a row
	var lastWarn time.Time // a failing relay warns once a minute, not every round
	for {
		n, err := o.RelayOnce(ctx)
		if err == nil {
			failing = 0
		}
		switch {
		case errors.Is(err, ErrNoOutbox):
			if !warnedMissing {
				o.log.Warn().Err(err).Msg("readmodel: outbox relay idle until the table exists")
				warnedMissing = true
			}
		case err != nil && ctx.Err() == nil:
			if failing++; failing == 1 || time.Since(lastWarn) >= time.Minute {
				o.log.Warn().Err(err).Int("published", n).Int("failed_rounds", failing).Msg("readmodel: outbox relay round failed; it tries again every round, and warns once a minute while it fails")
				lastWarn = time.Now()
			}
		case n > 0:
			o.log.Info().Int("published", n).Msg("readmodel: outbox relay published jobs of committed transactions")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RelayOnce publishes every row older than Grace now and returns how many
// it published.
func (o *Outbox) RelayOnce(ctx context.Context) (int, error) {
	total := 0
	for {
		n, more, err := o.relayRound(ctx)
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

// relayRound publishes up to BatchSize rows older than Grace; more says
// whether there may be others.
func (o *Outbox) relayRound(ctx context.Context) (n int, more bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, o.cfg.PublishTimeout)
	defer cancel()
	var recs []struct {
		ID      int64  `db:"id"`
		JobID   string `db:"job_id"`
		Subject string `db:"subject"`
		Headers string `db:"headers"`
		Body    []byte `db:"body"`
	}
	cutoff := time.Now().Add(-o.cfg.Grace).UnixMilli()
	err = o.db.primary.db.SelectContext(ctx, &recs, "SELECT id, job_id, subject, headers, body FROM "+OutboxTable+
		" WHERE created_ms <= ? ORDER BY id LIMIT ?", cutoff, o.cfg.BatchSize)
	if err != nil {
		return 0, false, o.outboxErr(err)
	}
	if len(recs) == 0 {
		return 0, false, nil
	}
	// The rows are committed, so the primary's position covers their
	// transactions: a causal token for their readers.
	var tok gtidSet
	if o.db.mariadb.Load() {
		tok = o.primaryPosition(ctx)
	}
	rows := make([]outboxRow, 0, len(recs))
	var unreadable []int64
	for _, r := range recs {
		var h nats.Header
		if err := json.Unmarshal([]byte(r.Headers), &h); err != nil {
			o.log.Error().Err(err).Int64("row", r.ID).Str("job_id", r.JobID).Str("subject", r.Subject).
				Msg("readmodel: outbox row has unreadable headers; set aside, never relayed (it stays in " + OutboxTable + ")")
			unreadable = append(unreadable, r.ID)
			continue
		}
		rows = append(rows, outboxRow{id: r.ID, job: bus.Prepared{ID: r.JobID, Subject: r.Subject, Header: h, Body: r.Body}})
	}
	if err := o.setAside(ctx, unreadable); err != nil {
		return 0, false, err
	}
	n, err = o.publishRows(ctx, rows, tok)
	return n, err == nil && len(recs) == o.cfg.BatchSize, err
}

// setAside takes rows the relay cannot read out of its rounds, leaving
// them in the table for an operator: their created_ms becomes the
// largest there is, so no round selects them again. Left in place, a
// full batch of them stopped the relay at the head of the table, and
// made it ask again at once, forever.
func (o *Outbox) setAside(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	q, args, err := sqlx.In("UPDATE "+OutboxTable+" SET created_ms = ? WHERE id IN (?)", int64(math.MaxInt64), ids)
	if err != nil {
		return fmt.Errorf("readmodel: outbox: %w", err)
	}
	if _, err := o.db.primary.db.ExecContext(ctx, q, args...); err != nil {
		return fmt.Errorf("%w (setting unreadable rows aside)", o.outboxErr(err))
	}
	return nil
}

// primaryPosition is the primary's @@gtid_binlog_pos, or nil.
func (o *Outbox) primaryPosition(ctx context.Context) gtidSet {
	var s string
	if err := o.db.primary.db.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&s); err != nil {
		o.log.Warn().Err(err).Msg("readmodel: outbox: cannot read @@gtid_binlog_pos; relayed jobs get no causal token")
		return nil
	}
	set, _ := parseGTIDSet(s)
	return set
}

// Pending counts the outbox's rows: jobs of committed transactions not
// yet published (and those of transactions still open).
func (o *Outbox) Pending(ctx context.Context) (int, error) {
	var n int
	if err := o.db.primary.db.GetContext(ctx, &n, "SELECT COUNT(*) FROM "+OutboxTable); err != nil {
		return 0, o.outboxErr(err)
	}
	return n, nil
}

// mergeTokenHeader sets h's causal token to the position covering both
// the token it holds and tok.
func mergeTokenHeader(h nats.Header, tok gtidSet) {
	if len(tok) == 0 {
		return
	}
	have, _ := parseGTIDSet(h.Get(bus.HeaderCausalToken))
	h.Set(bus.HeaderCausalToken, have.merge(tok).String())
}

// outboxErr wraps a missing table with ErrNoOutbox, and names the
// primary, as the read model's other errors do.
func (o *Outbox) outboxErr(err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && me.Number == 1146 || strings.Contains(err.Error(), "no such table: "+OutboxTable) {
		return fmt.Errorf("%w: %w", ErrNoOutbox, err)
	}
	return fmt.Errorf("readmodel: outbox on %s %s: %w", o.db.primary.role, o.db.primary.addr, err)
}
