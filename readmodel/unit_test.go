package readmodel

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Pure functions only: everything that talks to a database is tested
// against real servers in the other test files.

func TestParseGTIDSet(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"0-1-5", "0-1-5"},
		{"1-3-7,0-1-5", "0-1-5,1-3-7"},
		{" 0-1-5 ,\n1-3-7", "0-1-5,1-3-7"},
		{"0-1-5,0-2-9", "0-2-9"},
	} {
		s, err := parseGTIDSet(tc.in)
		if err != nil || s.String() != tc.want {
			t.Errorf("parseGTIDSet(%q) = %q, %v; want %q", tc.in, s, err, tc.want)
		}
	}
	for _, bad := range []string{"x", "0-1", "0-1-2-3", "a-1-2", "0--1-2", "-1-1-1"} {
		if _, err := parseGTIDSet(bad); err == nil {
			t.Errorf("parseGTIDSet(%q): no error", bad)
		}
	}
}

// TestAPositionOfTooManyDomainsIsRefused: a causal token (from a job's
// header: anyone who may publish a job writes it) of more GTIDs than
// replication domains a deployment has is refused, and WithToken ignores
// it; one of maxGTIDs domains is read. Unbounded, reading 70,000 domains
// in descending order took 24 s.
func TestAPositionOfTooManyDomainsIsRefused(t *testing.T) {
	t.Parallel()
	token := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf("%d-1-1", n-i)
		}
		return strings.Join(parts, ",")
	}
	if s, err := parseGTIDSet(token(maxGTIDs)); err != nil || len(s) != maxGTIDs {
		t.Fatalf("a position of %d domains: %d read, %v", maxGTIDs, len(s), err)
	}
	big := token(70_000)
	if _, err := parseGTIDSet(big); err == nil || !strings.Contains(err.Error(), "at most 1024") {
		t.Fatalf("a position of 70,000 domains: %v, want a refusal", err)
	}
	if got := Token(WithToken(Sticky(context.Background()), big)); got != "" {
		t.Fatalf("WithToken kept a refused token: %.40q...", got)
	}
}

func TestGTIDReachedAndMerge(t *testing.T) {
	t.Parallel()
	g := func(s string) gtidSet {
		set, err := parseGTIDSet(s)
		if err != nil {
			t.Fatal(err)
		}
		return set
	}
	for _, tc := range []struct {
		pos, tok string
		want     bool
	}{
		{"0-1-5", "0-1-5", true},
		{"0-1-6", "0-1-5", true},
		{"0-2-6", "0-1-5", true}, // after a failover the server id changes
		{"0-1-4", "0-1-5", false},
		{"", "0-1-5", false},
		{"0-1-5", "", true},
		{"0-1-5", "0-1-5,1-1-1", false},
		{"0-1-5,1-1-2", "1-1-1", true},
		{"1-1-2", "0-1-1,1-1-1", false},
	} {
		if got := g(tc.pos).reached(g(tc.tok)); got != tc.want {
			t.Errorf("%q reached %q = %v, want %v", tc.pos, tc.tok, got, tc.want)
		}
	}
	if got := g("0-1-5,2-1-1").merge(g("0-1-3,1-1-9")).String(); got != "0-1-5,1-1-9,2-1-1" {
		t.Errorf("merge = %q", got)
	}
	a := g("0-1-5")
	_ = a.merge(g("0-1-9"))
	if a.String() != "0-1-5" {
		t.Errorf("merge changed its receiver: %q", a)
	}
}

func TestIsPlainRead(t *testing.T) {
	t.Parallel()
	for q, want := range map[string]bool{
		"SELECT id FROM items WHERE id = ?":                                true,
		"  select id from items":                                           true,
		"(SELECT 1) UNION (SELECT 2)":                                      true,
		"/* hint */ SELECT 1":                                              true,
		"-- c\nSELECT 1":                                                   true,
		"WITH x AS (SELECT 1) SELECT * FROM x":                             true,
		"SHOW TABLES":                                                      true,
		"SELECT updated_at, last_update FROM t":                            true,
		"SELECT * FROM t WHERE s = 'for update'":                           true,
		"SELECT `update` FROM t":                                           true,
		"SELECT * FROM t WHERE id = 1 FOR UPDATE":                          false,
		"SELECT * FROM t WHERE id = 1 for\n  update":                       false,
		"SELECT * FROM t WHERE id = 1 FOR SHARE":                           false,
		"SELECT * FROM t WHERE id = 1 LOCK IN SHARE MODE":                  false,
		"INSERT INTO t VALUES (1)":                                         false,
		"UPDATE t SET a = 1":                                               false,
		"DELETE FROM t":                                                    false,
		"INSERT INTO t (a) VALUES (1) RETURNING id":                        false,
		"WITH x AS (SELECT 1) DELETE FROM t WHERE id IN (SELECT * FROM x)": false,
		"":                    false,
		"  -- only a comment": false,
		"CALL proc()":         false,
		// Every first keyword the doc lists, in any case.
		"EXPLAIN SELECT 1":          true,
		"describe items":            true,
		"DESC items":                true,
		"VALUES (1), (2)":           true,
		"TABLE items":               true,
		"sElEcT 1":                  true,
		"# mysql comment\nSELECT 1": true,
		"/* a */ /* b */ SELECT 1":  true,
		// Write keywords anywhere outside quotes and comments.
		"SELECT * FROM t LOCK IN SHARE MODE":             false,
		"REPLACE INTO t VALUES (1)":                      false,
		"SELECT 1; DELETE FROM t":                        false,
		"SELECT * FROM t WHERE a = 1 /* x */ FOR update": false,
		"EXPLAIN UPDATE t SET a = 1":                     false,
		"SHOW CREATE TABLE t":                            true,
		// Quotes, escapes and comments hide words, and only they do.
		"SELECT 'it''s for update' FROM t":          true,
		`SELECT 'it\'s for update' FROM t`:          true,
		`SELECT "a ""delete"" b" FROM t`:            true,
		"SELECT 1 -- for update\n":                  true,
		"SELECT 1 # delete\n":                       true,
		"SELECT 1 /* insert */":                     true,
		"SELECT 1 /* unterminated for update":       true,
		"SELECT 'unterminated for update":           true,
		"SELECT a-1 FROM t FOR UPDATE":              false,
		"SELECT `for` FROM t WHERE x = 1 FOR SHARE": false,
		// Identifiers that merely contain a keyword.
		"SELECT lock_id, shared, updates, $delete FROM t": true,
		"SELECT délete FROM t":                            true,
		// Not a read, or not a statement.
		"SET @a = 1":      false,
		"BEGIN":           false,
		"(DELETE FROM t)": false,
		"'SELECT'":        false,
		"1":               false,
	} {
		if got := isPlainRead(q); got != want {
			t.Errorf("isPlainRead(%q) = %v, want %v", q, got, want)
		}
	}
}

func TestSplitSQL(t *testing.T) {
	t.Parallel()
	script := `-- header; with a semicolon
CREATE TABLE a (s TEXT DEFAULT 'x;y'); /* block; comment */
INSERT INTO a VALUES ("q;""q"), ('it''s;');
# mysql comment;
CREATE INDEX i ON a (s)
;  -- trailing comment only
`
	want := []string{
		"-- header; with a semicolon\nCREATE TABLE a (s TEXT DEFAULT 'x;y')",
		"/* block; comment */\nINSERT INTO a VALUES (\"q;\"\"q\"), ('it''s;')",
		"# mysql comment;\nCREATE INDEX i ON a (s)",
	}
	if got := splitSQL(script); !reflect.DeepEqual(got, want) {
		t.Errorf("splitSQL:\n got %q\nwant %q", got, want)
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c, err := ConfigFromEnv(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	d := c.withDefaults()
	if d.Driver != DriverSQLite || d.Database != DefaultSQLitePath || c.NoSticky || d.MaxReplicaLag != 5*time.Second {
		t.Errorf("defaults: %+v", d)
	}
	c, err = ConfigFromEnv(env(map[string]string{
		"DB_CONNECTION": "MariaDB", "DB_HOST": "db", "DB_READ_HOST": "r1, r2:3307,,", "DB_PORT": "3310",
		"DB_DATABASE": "app", "DB_USERNAME": "u", "DB_PASSWORD": "p", "DB_STICKY": "false", "DB_MAX_REPLICA_LAG": "2",
	}))
	if err != nil {
		t.Fatal(err)
	}
	d = c.withDefaults()
	if d.Driver != DriverMySQL || d.addr(d.WriteHost) != "db:3310" || len(d.ReadHosts) != 2 ||
		d.addr(d.ReadHosts[0]) != "r1:3310" || d.addr(d.ReadHosts[1]) != "r2:3307" || !d.NoSticky ||
		d.MaxReplicaLag != 2*time.Second || d.Username != "u" || d.Database != "app" {
		t.Errorf("from env: %+v", d)
	}
	c, _ = ConfigFromEnv(env(map[string]string{"DB_HOST": "a", "DB_WRITE_HOST": "w"}))
	if c.WriteHost != "w" {
		t.Errorf("DB_WRITE_HOST should win over DB_HOST: %q", c.WriteHost)
	}
	for k, v := range map[string]string{"DB_CONNECTION": "postgres", "DB_PORT": "x", "DB_STICKY": "maybe", "DB_MAX_REPLICA_LAG": "-1s", "DB_SQLITE_MAX_MB": "0", "DB_PASSWORD": "change-me-db"} {
		if _, err := ConfigFromEnv(env(map[string]string{k: v})); err == nil || !strings.Contains(err.Error(), "DB_") {
			t.Errorf("%s=%q: error %v, want one naming the variable", k, v, err)
		}
	}
	for k, v := range map[string]string{"DB_READ_HOST": "127.0.0.1:3306,bad:host:x", "DB_HOST": "db:99999", "DB_WRITE_HOST": "user@db"} {
		if _, err := ConfigFromEnv(env(map[string]string{k: v})); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%q: error %v, want one naming the variable", k, v, err)
		}
	}
	for _, v := range []string{"db", "db:3307", "10.0.0.1", "::1", "[::1]:3307", "db-1.internal"} {
		if _, err := ConfigFromEnv(env(map[string]string{"DB_READ_HOST": v, "DB_HOST": v})); err != nil {
			t.Errorf("DB_HOST and DB_READ_HOST %q: %v", v, err)
		}
	}
	if _, err := ConfigFromEnv(env(map[string]string{"DB_MAX_REPLICA_LAG": "99999999999"})); err == nil || !strings.Contains(err.Error(), "DB_MAX_REPLICA_LAG") {
		t.Errorf("DB_MAX_REPLICA_LAG of more seconds than a duration holds: error %v, want one naming it", err)
	}
	for v, want := range map[string]time.Duration{"": 10 * time.Second, "3": 3 * time.Second, "1m": time.Minute, "-1": -1} {
		c, err := ConfigFromEnv(env(map[string]string{"DB_REPLICA_READ_TIMEOUT": v}))
		if got := c.withDefaults().ReplicaReadTimeout; err != nil || got != want {
			t.Errorf("DB_REPLICA_READ_TIMEOUT=%q: ReplicaReadTimeout %v, %v; want %v", v, got, err, want)
		}
	}
	for _, v := range []string{"0", "-5s", "-2", "soon"} {
		if _, err := ConfigFromEnv(env(map[string]string{"DB_REPLICA_READ_TIMEOUT": v})); err == nil || !strings.Contains(err.Error(), "DB_REPLICA_READ_TIMEOUT") {
			t.Errorf("DB_REPLICA_READ_TIMEOUT=%q: error %v, want one naming it", v, err)
		}
	}
	for v, want := range map[string]int64{"": 1 << 30, "5": 5 << 20, "-1": -1 << 20} {
		c, err := ConfigFromEnv(env(map[string]string{"DB_SQLITE_MAX_MB": v}))
		if got := c.withDefaults().SQLiteMaxBytes; err != nil || got != want {
			t.Errorf("DB_SQLITE_MAX_MB=%q: SQLiteMaxBytes %d, %v; want %d", v, got, err, want)
		}
	}
	if got := (Config{Port: 3306}).addr("::1"); got != "[::1]:3306" {
		t.Errorf("addr(::1) = %q", got)
	}
}

func TestMySQLDSN(t *testing.T) {
	t.Parallel()
	c := Config{Driver: DriverMySQL, Username: "u", Password: "p", Database: "app", DSNParams: "tls=skip-verify"}.withDefaults()
	dsn, err := c.mysqlDSN("h:1", 0)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mysql.ParseDSN(dsn)
	if err != nil || !m.ParseTime || !m.InterpolateParams || m.TLSConfig != "skip-verify" || m.Addr != "h:1" || m.Timeout != 2*time.Second || m.ReadTimeout != 0 {
		t.Errorf("DSN %q parsed as %+v, %v", dsn, m, err)
	}
	if dsn, err = c.mysqlDSN("h:1", c.ReplicaReadTimeout); err != nil {
		t.Fatal(err)
	}
	if m, err = mysql.ParseDSN(dsn); err != nil || m.ReadTimeout != 10*time.Second {
		t.Errorf("a replica's read DSN %q parsed as %+v, %v; want readTimeout 10s", dsn, m, err)
	}
	c.DSNParams = "timeout=banana"
	if _, err := c.mysqlDSN("h:1", 0); err == nil {
		t.Error("bad DSNParams: no error")
	}
}

func TestJudge(t *testing.T) {
	t.Parallel()
	running := replStatus{found: true, ioRunning: "Yes", sqlRunning: "Yes", behind: sql.NullInt64{Valid: true}}
	stopped := replStatus{found: true, ioRunning: "Yes", sqlRunning: "No"}
	broken := replStatus{found: true, ioRunning: "Yes", sqlRunning: "No", sqlErrno: 1062, sqlError: "Duplicate entry"}
	slow := running
	slow.behind.Int64 = 30
	maxLag := 5 * time.Second
	for _, tc := range []struct {
		name string
		rs   replStatus
		gl   gtidLagResult
		in   bool
		why  string
	}{
		{"healthy", running, gtidLagResult{known: true}, true, ""},
		{"healthy, primary never seen", running, gtidLagResult{}, true, ""},
		{"SQL thread stopped, nothing missed", stopped, gtidLagResult{known: true}, true, ""},
		{"SQL thread stopped, missing a young write", stopped, gtidLagResult{known: true, lag: 2 * time.Second}, true, ""},
		{"SQL thread stopped, missing an old write", stopped, gtidLagResult{known: true, lag: 6 * time.Second}, false, "lagging"},
		{"SQL thread stopped, behind since before start-up", stopped, gtidLagResult{}, false, "lag unknown"},
		{"Seconds_Behind_Master over the bound", slow, gtidLagResult{known: true}, false, "lagging"},
		{"broken", broken, gtidLagResult{known: true}, false, "broken"},
		{"not a replica", replStatus{}, gtidLagResult{known: true}, false, "not a replica"},
	} {
		in, _, why := judge(tc.rs, tc.gl, maxLag)
		if in != tc.in || !strings.Contains(why, tc.why) {
			t.Errorf("%s: in pool %v (%q), want %v (%q)", tc.name, in, why, tc.in, tc.why)
		}
	}
}

func TestGTIDLagHistory(t *testing.T) {
	t.Parallel()
	d := &DB{cfg: Config{MaxReplicaLag: 5 * time.Second, CheckInterval: time.Second}}
	t0 := time.Now()
	g := func(s string) gtidSet { set, _ := parseGTIDSet(s); return set }
	d.recordPrimaryPos(t0, g("0-1-10"))
	d.recordPrimaryPos(t0.Add(time.Second), g("0-1-10")) // unchanged: no new sample
	d.recordPrimaryPos(t0.Add(2*time.Second), g("0-1-12"))
	d.recordPrimaryPos(t0.Add(3*time.Second), g("0-1-15"))
	if len(d.history) != 3 {
		t.Fatalf("history has %d samples, want 3", len(d.history))
	}
	now := t0.Add(4 * time.Second)
	lag := func(pos string) gtidLagResult { return d.gtidLag(replStatus{pos: g(pos), posKnown: true}, now) }
	if r := lag("0-1-15"); !r.known || r.lag != 0 {
		t.Errorf("caught up: %+v", r)
	}
	if r := lag("0-1-12"); !r.known || r.lag != time.Second {
		t.Errorf("missing the write seen at t0+3s: %+v, want 1s", r)
	}
	if r := lag("0-1-9"); r.known {
		t.Errorf("behind the first sample: %+v, want unknown", r)
	}
	d.recordPrimaryPos(t0.Add(time.Minute), g("0-1-16"))
	if len(d.history) != 1 {
		t.Errorf("old samples kept: %d", len(d.history))
	}
}

func TestPickReplicaRoundRobin(t *testing.T) {
	t.Parallel()
	d := &DB{primary: &member{addr: "p"}}
	for i := range 3 {
		m := &member{addr: fmt.Sprint("r", i), role: RoleReplica}
		m.inPool.Store(i != 1)
		d.replicas = append(d.replicas, m)
	}
	d.rebuildPool()
	seen := map[string]int{}
	for range 100 {
		seen[d.pickReplica(nil).addr]++
	}
	if seen["r1"] != 0 || seen["r0"] < 40 || seen["r2"] < 40 {
		t.Errorf("picks %v: want r0 and r2 evenly, never r1 (out of the pool)", seen)
	}
	if m := d.pickReplica(d.replicas[0]); m == nil || m.addr != "r2" {
		t.Errorf("pick except r0 = %v, want r2", m)
	}
	d.replicas[0].inPool.Store(false)
	d.replicas[2].inPool.Store(false)
	d.rebuildPool()
	if m := d.pickReplica(nil); m != nil {
		t.Errorf("no replica in the pool, picked %s", m.addr)
	}
}

func TestErrorClassification(t *testing.T) {
	t.Parallel()
	m := &member{addr: "h:1", role: RolePrimary}
	ro := wrapErr(m, &mysql.MySQLError{Number: 1290, Message: "The MariaDB server is running with the --read-only option"})
	if !errors.Is(ro, ErrReadOnly) {
		t.Errorf("1290 not ErrReadOnly: %v", ro)
	}
	if wrapErr(m, sql.ErrNoRows) != sql.ErrNoRows {
		t.Error("sql.ErrNoRows was wrapped")
	}
	conn := []error{mysql.ErrInvalidConn, &net.OpError{Op: "dial", Err: errors.New("connection refused")}, fmt.Errorf("x: %w", &mysql.MySQLError{Number: 1053})}
	for _, err := range conn {
		if !isConnError(err) {
			t.Errorf("isConnError(%v) = false", err)
		}
	}
	for _, err := range []error{sql.ErrNoRows, &mysql.MySQLError{Number: 1064}, errors.New("x")} {
		if isConnError(err) {
			t.Errorf("isConnError(%v) = true", err)
		}
	}
}

// BenchmarkRoute is the router's choice alone (no query runs): a plain
// read's classification, the context lookup and the round-robin pick.
func BenchmarkRoute(b *testing.B) {
	d := &DB{primary: &member{addr: "p"}}
	for i := range 2 {
		m := &member{addr: fmt.Sprint("r", i), role: RoleReplica}
		m.inPool.Store(true)
		d.replicas = append(d.replicas, m)
	}
	d.rebuildPool()
	ctx := Sticky(b.Context())
	for b.Loop() {
		if m, _ := d.reader(ctx, "SELECT id, title, n FROM notes WHERE id = ?"); m == d.primary {
			b.Fatal("routed to the primary")
		}
	}
}
