package readmodel

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// MemberState is one pool member's health, for /up and metrics.
type MemberState struct {
	// Addr is host:port (the file path for SQLite).
	Addr string `json:"addr"`
	// Role is RolePrimary or RoleReplica.
	Role Role `json:"role"`
	// Up is whether the last check reached the server.
	Up bool `json:"up"`
	// InPool is, for a replica, whether it serves reads now; for the
	// primary, whether it is up and takes writes.
	InPool bool `json:"in_pool"`
	// ReadOnly is the server's @@read_only (the primary must have it off).
	ReadOnly bool `json:"read_only"`
	// Lag is a replica's staleness: the larger of Seconds_Behind_Master and
	// how long it has been missing a transaction that the primary had (from
	// GTID positions, to within CheckInterval).
	Lag time.Duration `json:"lag"`
	// IORunning and SQLRunning are the replica's Slave_IO_Running and
	// Slave_SQL_Running ("Yes", "No", "Connecting").
	IORunning  string `json:"io_running,omitempty"`
	SQLRunning string `json:"sql_running,omitempty"`
	// Position is the GTID position: gtid_binlog_pos for the primary,
	// gtid_slave_pos for a replica (MariaDB only).
	Position string `json:"position,omitempty"`
	// Reason says why the member is not in the pool ("" when it is).
	Reason string `json:"reason,omitempty"`
	// LastError is the last error seen talking to the member, if any: a
	// failed check, a failed read, or a replication thread's error.
	LastError string `json:"last_error,omitempty"`
	// CheckedAt is when the state was last updated.
	CheckedAt time.Time `json:"checked_at"`
}

// Members returns the state of the primary (first) and of every replica, as
// of their last health check.
func (d *DB) Members() []MemberState {
	out := make([]MemberState, 0, 1+len(d.replicas))
	for _, m := range d.members() {
		m.mu.Lock()
		out = append(out, m.state)
		m.mu.Unlock()
	}
	return out
}

// Check reports whether the primary is reachable and writable now (it runs a
// query; it does not use the last health check). The error wraps ErrReadOnly
// when the primary has @@read_only on.
func (d *DB) Check(ctx context.Context) error {
	p := d.primary
	if p.health == nil { // SQLite
		return wrapErr(p, p.db.PingContext(ctx))
	}
	var ro string
	if err := p.health.QueryRowContext(ctx, "SELECT @@read_only").Scan(&ro); err != nil {
		return wrapErr(p, err)
	}
	if readOnlyValue(ro) {
		return fmt.Errorf("readmodel: primary %s has @@read_only ON: %w", p.addr, ErrReadOnly)
	}
	return nil
}

// readOnlyValue reads @@read_only: 0/1 up to MariaDB 11.x, then OFF/ON/NO_LOCK...
func readOnlyValue(s string) bool { return !(s == "0" || strings.EqualFold(s, "OFF")) }

func (d *DB) checkLoop(ctx context.Context) {
	defer close(d.done)
	t := time.NewTicker(d.cfg.CheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.kick:
		}
		d.checkAll(ctx)
	}
}

// checkAll checks the primary, then every replica at once.
func (d *DB) checkAll(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.CheckTimeout)
	defer cancel()
	d.checkPrimary(ctx)
	var wg sync.WaitGroup
	for _, m := range d.replicas {
		wg.Go(func() { d.checkReplica(ctx, m) })
	}
	wg.Wait()
}

func (d *DB) checkPrimary(ctx context.Context) {
	p := d.primary
	st := MemberState{Addr: p.addr, Role: RolePrimary, CheckedAt: time.Now()}
	var version, ro string
	if err := p.health.QueryRowContext(ctx, "SELECT @@version, @@read_only").Scan(&version, &ro); err != nil {
		st.Reason, st.LastError = "unreachable", err.Error()
		d.setState(p, st)
		return
	}
	mariadb := strings.Contains(version, "MariaDB")
	d.mariadb.Store(mariadb)
	st.Up, st.ReadOnly = true, readOnlyValue(ro)
	st.InPool = !st.ReadOnly
	if st.ReadOnly {
		st.Reason = "@@read_only is ON: writes are refused"
	}
	p.readOnly.Store(st.ReadOnly)
	if mariadb {
		var pos string
		if err := p.health.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
			st.LastError = err.Error()
		} else if set, err := parseGTIDSet(pos); err == nil {
			st.Position = set.String()
			d.recordPrimaryPos(st.CheckedAt, set)
		}
	}
	d.setState(p, st)
}

func (d *DB) checkReplica(ctx context.Context, m *member) {
	st := MemberState{Addr: m.addr, Role: RoleReplica, CheckedAt: time.Now()}
	var version, ro string
	err := m.health.QueryRowContext(ctx, "SELECT @@version, @@read_only").Scan(&version, &ro)
	var rs replStatus
	if err == nil {
		rs, err = replicaStatus(ctx, m.health, strings.Contains(version, "MariaDB"))
	}
	if err != nil {
		st.Reason, st.LastError = "unreachable", err.Error()
		d.setState(m, st)
		return
	}
	st.Up, st.ReadOnly, st.IORunning, st.SQLRunning = true, readOnlyValue(ro), rs.ioRunning, rs.sqlRunning
	st.LastError = firstNonEmpty(rs.sqlError, rs.ioError)
	gl := d.gtidLag(rs, time.Now())
	if rs.posKnown {
		st.Position = rs.pos.String()
		pos := rs.pos
		m.applied.Store(&pos)
	}
	st.InPool, st.Lag, st.Reason = judge(rs, gl, d.cfg.MaxReplicaLag)
	d.setState(m, st)
}

// gtidLagResult is what the primary's position history says of a replica.
type gtidLagResult struct {
	known bool
	lag   time.Duration
}

// judge decides whether a replica serves reads. A replica is out when it is
// not replicating at all, when its SQL thread stopped on an error (broken),
// when its lag is over maxLag, or when its lag cannot be known. Its lag is the
// larger of Seconds_Behind_Master (NULL whenever a replication thread is
// stopped) and the GTID lag. So a replica whose SQL thread was stopped on
// purpose stays in the pool while it misses nothing, or only writes younger
// than maxLag, and leaves it after that.
func judge(rs replStatus, gl gtidLagResult, maxLag time.Duration) (inPool bool, lag time.Duration, reason string) {
	if !rs.found {
		return false, 0, "not a replica: SHOW SLAVE STATUS is empty"
	}
	if rs.sqlErrno != 0 {
		return false, 0, fmt.Sprintf("replication broken: SQL thread error %d: %s", rs.sqlErrno, rs.sqlError)
	}
	known := gl.known
	lag = gl.lag
	if rs.behind.Valid {
		known = true
		lag = max(lag, time.Duration(rs.behind.Int64)*time.Second)
	}
	if !known {
		return false, 0, fmt.Sprintf("lag unknown: Slave_IO_Running=%s, Slave_SQL_Running=%s, and it is behind the primary's last known position", rs.ioRunning, rs.sqlRunning)
	}
	if lag > maxLag {
		return false, lag, fmt.Sprintf("lagging %s behind the primary (max %s)", lag.Round(time.Millisecond), maxLag)
	}
	return true, lag, ""
}

// setState stores a member's new state, keeps its pool flag in step, and
// logs a change of pool membership.
func (d *DB) setState(m *member, st MemberState) {
	if m.role == RoleReplica {
		d.keepSlowOut(m, &st)
	}
	m.mu.Lock()
	was := m.state
	m.state = st
	m.mu.Unlock()
	if m.inPool.Swap(st.InPool) != st.InPool && m.role == RoleReplica {
		d.rebuildPool()
	}
	switch {
	case st.InPool && !was.InPool:
		d.log.Info().Str("member", m.addr).Str("role", string(m.role)).Dur("lag", st.Lag).Msg("readmodel: member joined the pool")
	case !st.InPool && was.InPool:
		d.log.Warn().Str("member", m.addr).Str("role", string(m.role)).Str("reason", st.Reason).Str("error", st.LastError).Msg("readmodel: member left the pool")
	}
}

// suspect takes a replica whose read just failed out of the pool at once and
// asks for a check now; the check puts it back if it is fine.
func (d *DB) suspect(m *member, err error) {
	if m.role != RoleReplica {
		return
	}
	m.mu.Lock()
	st := m.state
	m.mu.Unlock()
	st.Up, st.InPool = false, false
	st.Reason, st.LastError, st.CheckedAt = "a read failed", err.Error(), time.Now()
	d.setState(m, st)
	select {
	case d.kick <- struct{}{}:
	default:
	}
}
