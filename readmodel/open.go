package readmodel

// Opening the pools: a primary and its replicas, or one SQLite file.

import (
	"context"
	"errors"
	"fmt"
	"time"

	_ "github.com/go-sql-driver/mysql" // the "mysql" driver
	"github.com/jmoiron/sqlx"
	_ "modernc.org/sqlite" // the "sqlite" driver
)

// Open connects to the configured databases. For SQLite it opens (and
// creates) the file and fails if it cannot. For MySQL it never fails for a
// server being unreachable: it runs a first health check of every member
// (bounded by ctx and CheckTimeout) so routing is right from the first
// query, then keeps checking in the background until Close. Use Check to
// require a reachable, writable primary.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	d := &DB{cfg: cfg, log: cfg.Logger, kick: make(chan struct{}, 1), tracer: tracerFor(cfg.TracerProvider)}
	var err error
	if cfg.Driver == DriverSQLite {
		err = d.openSQLite(ctx)
	} else {
		err = d.openMySQL(ctx)
	}
	if err != nil {
		_ = d.Close()
		return nil, err
	}
	return d, nil
}

func (d *DB) openSQLite(ctx context.Context) error {
	dsn, err := d.cfg.sqliteDSN()
	if err != nil {
		return err
	}
	db, err := d.newPool("sqlite", dsn, d.cfg.MaxOpenConns, d.cfg.MaxIdleConns)
	if err != nil {
		return err
	}
	if d.cfg.Database == ":memory:" {
		db.SetMaxOpenConns(1) // every connection would have its own database
	}
	d.primary = &member{addr: d.cfg.Database, role: RolePrimary, db: db, stmts: newStmtCache(db)}
	if err := pingSQLite(ctx, db, d.cfg.BusyTimeout); err != nil {
		return fmt.Errorf("readmodel: open SQLite %s: %w", d.cfg.Database, err)
	}
	d.primary.inPool.Store(true)
	d.primary.state = MemberState{Addr: d.cfg.Database, Role: RolePrimary, Up: true, InPool: true, CheckedAt: time.Now()}
	return nil
}

// pingSQLite opens the first connection, which switches a new file to WAL.
// That switch needs the file to itself and may fail at once with
// SQLITE_BUSY, without waiting, while another process is creating the same
// file; it is tried again for up to busyTimeout.
func pingSQLite(ctx context.Context, db *sqlx.DB, busyTimeout time.Duration) error {
	deadline := time.Now().Add(busyTimeout)
	for {
		err := db.PingContext(ctx)
		if err == nil || !isSQLiteBusy(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (d *DB) openMySQL(ctx context.Context) error {
	var err error
	if d.primary, err = d.newMember(RolePrimary, d.cfg.WriteHost); err != nil {
		return err
	}
	for _, h := range d.cfg.ReadHosts {
		m, err := d.newMember(RoleReplica, h)
		if err != nil {
			return err
		}
		d.replicas = append(d.replicas, m)
	}
	d.checkAll(ctx)
	loopCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel, d.done = cancel, make(chan struct{})
	go d.checkLoop(loopCtx)
	return nil
}

func (d *DB) newMember(role Role, host string) (*member, error) {
	addr := d.cfg.addr(host)
	dsn, err := d.cfg.mysqlDSN(addr, 0)
	if err != nil {
		return nil, err
	}
	readDSN := dsn
	if role == RoleReplica && d.cfg.ReplicaReadTimeout > 0 {
		if readDSN, err = d.cfg.mysqlDSN(addr, d.cfg.ReplicaReadTimeout); err != nil {
			return nil, err
		}
	}
	m := &member{addr: addr, role: role}
	m.state = MemberState{Addr: addr, Role: role, Reason: "not checked yet"}
	if m.db, err = d.newPool("mysql", readDSN, d.cfg.MaxOpenConns, d.cfg.MaxIdleConns); err != nil {
		return nil, err
	}
	if m.health, err = d.newPool("mysql", dsn, 1, 1); err != nil { // bounded by CheckTimeout
		_ = m.db.Close()
		return nil, err
	}
	return m, nil
}

func (d *DB) newPool(driver, dsn string, maxOpen, maxIdle int) (*sqlx.DB, error) {
	db, err := sqlx.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("readmodel: %w", err)
	}
	db.SetMaxOpenConns(maxOpen)
	db.SetMaxIdleConns(maxIdle)
	db.SetConnMaxLifetime(d.cfg.ConnMaxLifetime)
	return db, nil
}

// Close stops the health checker and closes every connection pool.
func (d *DB) Close() error {
	if d.cancel != nil {
		d.cancel()
		<-d.done
	}
	var errs []error
	for _, m := range d.members() {
		if m == nil {
			continue
		}
		m.stmts.close()
		errs = append(errs, m.db.Close())
		if m.health != nil {
			errs = append(errs, m.health.Close())
		}
	}
	return errors.Join(errs...)
}

func (d *DB) members() []*member { return append([]*member{d.primary}, d.replicas...) }
