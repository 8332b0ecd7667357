package readmodel

import (
	"fmt"
	"time"
)

// A replica can answer its health checks (SELECT @@version, SHOW SLAVE
// STATUS) while reads of a table hang: a metadata lock held by a replicated
// ALTER TABLE, a LOCK TABLES on the replica, a stalled disk. Nothing fails,
// so nothing would route around it. So the connections that carry reads to
// a replica have the driver's read timeout set to Config.ReplicaReadTimeout
// (a replica that sends nothing for that long fails the read as a broken
// connection), and a replica that fails a read that way leaves the pool
// for slowReadChecks health checks, whatever they find.

// slowReadChecks is how many health-check intervals a replica stays out
// of the pool after a slow read (30 s with the default CheckInterval).
const slowReadChecks = 30

// tooSlow reports whether a read that started at start and failed as a
// broken connection ran into the replica read timeout.
func (d *DB) tooSlow(start time.Time) bool {
	limit := d.cfg.ReplicaReadTimeout
	return limit > 0 && time.Since(start) >= limit
}

// shun takes a replica whose read was too slow out of the pool for
// slowReadChecks check intervals (setState keeps it out meanwhile), and
// returns err saying why.
func (d *DB) shun(m *member, err error) error {
	err = fmt.Errorf("replica %s sent nothing for %s (ReplicaReadTimeout): %w", m.addr, d.cfg.ReplicaReadTimeout, err)
	m.slowTill.Store(time.Now().Add(slowReadChecks * d.cfg.CheckInterval).UnixNano())
	m.mu.Lock()
	st := m.state
	m.mu.Unlock()
	st.LastError, st.CheckedAt = err.Error(), time.Now()
	d.setState(m, st)
	return err
}

// keepSlowOut overrides a health check that would let a replica back into
// the pool while a slow read keeps it out.
func (d *DB) keepSlowOut(m *member, st *MemberState) {
	till := m.slowTill.Load()
	if !st.InPool || till == 0 || time.Now().UnixNano() >= till {
		return
	}
	st.InPool = false
	st.Reason = fmt.Sprintf("a read took longer than %s (ReplicaReadTimeout); out of the pool until %s",
		d.cfg.ReplicaReadTimeout, time.Unix(0, till).UTC().Format(time.TimeOnly))
}
