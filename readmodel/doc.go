// Package readmodel is jetfleet's database layer: an sqlx router that sends
// reads to healthy MySQL/MariaDB replicas and writes to the primary, with
// Laravel's sticky reads, causal reads across requests and nodes, replica
// health and lag checks, and migrations. With no configuration it is one
// SQLite file (modernc.org/sqlite, no cgo) behind the same API.
//
// # Routing
//
// Get, Select and Query are reads: they go to a replica in the pool, round
// robin, or to the primary when none is healthy. Exec, NamedExec and Tx go
// to the primary, and so do SELECT ... FOR UPDATE (or any statement that is
// not a plain read), and reads in a context marked with UsePrimary. Writer
// and Reader give the raw *sqlx.DB for everything else. A read that fails
// because its server or connection failed (not because of the statement) is
// tried once more on another replica or the primary, and the failing
// replica leaves the pool until a health check says it is fine.
//
// # Sticky and causal reads
//
// Sticky(ctx) opens a request scope: after the scope writes, its reads go to
// the primary (DB_STICKY, on by default). On MariaDB every write in a scope
// also reads @@last_gtid on the connection that wrote (go-sql-driver/mysql
// does not surface the GTID that the server's session tracking reports), and
// Token(ctx) returns the scope's GTID position. Kept in the user's session
// and given back with WithToken on the next request, on any node, it makes
// that request's reads go to a replica whose gtid_slave_pos has reached it,
// or one that reaches it within Config.CausalWait (MASTER_GTID_WAIT), or else
// the primary. The price is one more round trip per write in a scope, and a
// wait of at most CausalWait for a read whose token no replica has reached.
//
// MySQL (Oracle) support is partial and untested (the tests run MariaDB
// only). Routing, stickiness, migrations and health checks are written for
// it (SHOW REPLICA STATUS, falling back to SHOW SLAVE STATUS), but its lag is
// Seconds_Behind_Source alone, so a MySQL replica with a stopped thread
// leaves the pool. Causal tokens are MariaDB-only: MySQL has no @@last_gtid,
// and the session's GTID is only reported through session_track_gtids in OK
// packets, which the Go driver does not expose; readmodel does not use
// WAIT_FOR_EXECUTED_GTID_SET. With MySQL, Token returns "" and reads with
// WithToken are ordinary reads: use Sticky or UsePrimary instead.
//
// # Health
//
// A background checker looks at every member each CheckInterval (1s): the
// primary's @@read_only and GTID position; each replica's SHOW SLAVE STATUS.
// A replica leaves the read pool when it is unreachable, when replication
// is broken (the SQL thread stopped on an error), or when its lag exceeds
// MaxReplicaLag (DB_MAX_REPLICA_LAG, 5s), and rejoins when it is healthy
// again; a replica that is down when Open runs joins once it is up. Lag is
// the larger of Seconds_Behind_Master and a GTID measure: how long the
// replica has been missing a transaction that the primary's position
// already had (sampled each check). Seconds_Behind_Master alone cannot be
// trusted: it is NULL whenever a replication thread is stopped, and 0 when
// the IO thread is behind. So a replica whose SQL thread was stopped on
// purpose keeps serving while it misses nothing (or only writes younger than
// MaxReplicaLag) and leaves the pool after that; one that is behind a
// position the primary already had when the checker started, with its
// threads stopped, is out because its lag is unknown. Members reports each
// member's state for /up and metrics; Check tests the primary.
//
// A replica can answer those checks while reads of a table hang (a
// replicated ALTER TABLE's lock, a LOCK TABLES on it, a stalled disk), so
// ReplicaReadTimeout (DB_REPLICA_READ_TIMEOUT, 10s) bounds how long a read
// on a replica waits for the server to send anything: a read that waits
// longer is run again on the primary, and the replica stays out of the pool
// for 30 check intervals, whatever the checks find, then rejoins (and
// leaves again at its next slow read).
//
// The primary's @@read_only is checked too: a write to a read-only primary
// fails with an error wrapping ErrReadOnly instead of going anywhere else,
// even for an account that read_only does not stop.
//
// # MariaDB setup
//
// deploy/mariadb has the primary and replica config files and the SQL that
// sets up GTID replication and the application user; the tests run real
// servers with them. The application user needs SLAVE MONITOR (REPLICATION
// CLIENT on MySQL) for the health checks.
package readmodel
