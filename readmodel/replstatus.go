package readmodel

import (
	"context"
	"database/sql"
	"strconv"
	"time"

	"github.com/jmoiron/sqlx"
)

// replStatus is the part of SHOW SLAVE STATUS the health checker uses.
type replStatus struct {
	found                 bool
	ioRunning, sqlRunning string
	behind                sql.NullInt64
	ioErrno, sqlErrno     int
	ioError, sqlError     string
	pos                   gtidSet
	posKnown              bool
}

// replicaStatus runs SHOW SLAVE STATUS (SHOW REPLICA STATUS on MySQL, whose
// 8.4 dropped the old statement) and reads it by column name, accepting both
// the old (Slave_, _Master) and new (Replica_, _Source) names; on MariaDB it
// adds @@gtid_slave_pos.
func replicaStatus(ctx context.Context, db *sqlx.DB, mariadb bool) (replStatus, error) {
	q := "SHOW SLAVE STATUS"
	if !mariadb {
		q = "SHOW REPLICA STATUS"
	}
	row, err := firstRow(ctx, db, q)
	if err != nil && !mariadb {
		row, err = firstRow(ctx, db, "SHOW SLAVE STATUS") // MySQL before 8.0.22
	}
	if err != nil {
		return replStatus{}, err
	}
	if row == nil {
		return replStatus{}, nil
	}
	get := func(names ...string) sql.NullString {
		for _, n := range names {
			if v, ok := row[n]; ok {
				return v
			}
		}
		return sql.NullString{}
	}
	rs := replStatus{
		found:      true,
		ioRunning:  get("Slave_IO_Running", "Replica_IO_Running").String,
		sqlRunning: get("Slave_SQL_Running", "Replica_SQL_Running").String,
		ioError:    get("Last_IO_Error").String,
		sqlError:   get("Last_SQL_Error").String,
	}
	rs.ioErrno, _ = strconv.Atoi(get("Last_IO_Errno").String)
	rs.sqlErrno, _ = strconv.Atoi(get("Last_SQL_Errno").String)
	if b := get("Seconds_Behind_Master", "Seconds_Behind_Source"); b.Valid {
		if n, err := strconv.ParseInt(b.String, 10, 64); err == nil {
			rs.behind = sql.NullInt64{Int64: n, Valid: true}
		}
	}
	if mariadb {
		var pos string
		if err := db.QueryRowContext(ctx, "SELECT @@gtid_slave_pos").Scan(&pos); err != nil {
			return rs, err
		}
		if set, err := parseGTIDSet(pos); err == nil {
			rs.pos, rs.posKnown = set, true
		}
	}
	return rs, nil
}

// firstRow returns the first row of a query as column name → value, or nil.
func firstRow(ctx context.Context, db *sqlx.DB, q string) (map[string]sql.NullString, error) {
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if !rows.Next() {
		return nil, rows.Err()
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	out := make(map[string]sql.NullString, len(cols))
	for i, c := range cols {
		out[c] = vals[i]
	}
	return out, rows.Err()
}

// posSample is the primary's GTID position as first seen at a time.
type posSample struct {
	at      time.Time
	pos     gtidSet
	initial bool // the first sample: the primary may have been there long before
}

// recordPrimaryPos adds the primary's position to the history when it moved,
// and forgets samples older than twice MaxReplicaLag (keeping the newest).
func (d *DB) recordPrimaryPos(now time.Time, pos gtidSet) {
	n := len(d.history)
	if n == 0 || !d.history[n-1].pos.reached(pos) || !pos.reached(d.history[n-1].pos) {
		d.history = append(d.history, posSample{at: now, pos: pos, initial: n == 0})
	}
	horizon := now.Add(-2*d.cfg.MaxReplicaLag - d.cfg.CheckInterval)
	drop := 0
	for drop < len(d.history)-1 && d.history[drop].at.Before(horizon) {
		drop++
	}
	d.history = append(d.history[:0], d.history[drop:]...)
}

// gtidLag measures a replica against the primary's history: it has been
// missing a transaction since the oldest sample it has not reached. Behind
// the very first sample, how long it has been behind is unknown.
func (d *DB) gtidLag(rs replStatus, now time.Time) gtidLagResult {
	if !rs.posKnown || len(d.history) == 0 {
		return gtidLagResult{}
	}
	for _, s := range d.history {
		if !rs.pos.reached(s.pos) {
			if s.initial {
				return gtidLagResult{}
			}
			return gtidLagResult{known: true, lag: now.Sub(s.at)}
		}
	}
	return gtidLagResult{known: true}
}
