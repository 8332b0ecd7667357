package readmodel

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetfleet/jetfleet/internal/placeholder"
)

// Drivers accepted in Config.Driver (and DB_CONNECTION).
const (
	// DriverSQLite is one local file through modernc.org/sqlite (no cgo).
	DriverSQLite = "sqlite"
	// DriverMySQL is MySQL or MariaDB through go-sql-driver/mysql.
	DriverMySQL = "mysql"
)

// DefaultSQLitePath is the SQLite file used when Config.Database is empty.
const DefaultSQLitePath = "./data/jetfleet.db"

// Config says where the databases are and how to route between them. The
// zero value opens the SQLite file ./data/jetfleet.db; every zero field
// means the default written beside it. ConfigFromEnv fills it from the
// DB_* environment variables Laravel users know.
type Config struct {
	// Driver is DriverSQLite (default) or DriverMySQL; "mariadb" is accepted
	// as DriverMySQL. DB_CONNECTION.
	Driver string
	// Database is the SQLite file path (default DefaultSQLitePath; the
	// directory is created) or the MySQL database name (default "jetfleet").
	// DB_DATABASE.
	Database string

	// WriteHost is the primary, "host" or "host:port" (default 127.0.0.1).
	// DB_WRITE_HOST, else DB_HOST.
	WriteHost string
	// ReadHosts are the replicas, each "host" or "host:port". Empty: every
	// read goes to the primary. DB_READ_HOST (comma-separated).
	ReadHosts []string
	// Port is used for hosts that name none (default 3306). DB_PORT.
	Port int
	// Username (default "root") and Password. DB_USERNAME, DB_PASSWORD.
	Username, Password string
	// DSNParams are extra go-sql-driver/mysql DSN parameters in URL query
	// form, e.g. "tls=true&charset=utf8mb4". readmodel already sets
	// parseTime=true, interpolateParams=true (one round trip per query) and
	// a dial timeout; DSNParams override them.
	DSNParams string

	// NoSticky turns stickiness off: a Sticky scope that wrote still reads
	// from replicas (and, on MariaDB, uses its causal token). DB_STICKY=false.
	NoSticky bool
	// MaxReplicaLag is the staleness beyond which a replica leaves the read
	// pool (default 5s). DB_MAX_REPLICA_LAG.
	MaxReplicaLag time.Duration
	// CheckInterval is how often the health checker looks at every member
	// (default 1s).
	CheckInterval time.Duration
	// CheckTimeout bounds one health check of one member (default 2s).
	CheckTimeout time.Duration
	// CausalWait bounds how long a read with a token waits for a replica to
	// catch up (MASTER_GTID_WAIT) before it goes to the primary instead
	// (default 100ms).
	CausalWait time.Duration
	// DialTimeout bounds connecting to a server (default 2s).
	DialTimeout time.Duration
	// ReplicaReadTimeout is how long a read on a replica may wait for the
	// server to send anything (the driver's readTimeout on the connections
	// that carry reads to replicas; default 10s; negative: no bound). A
	// read that waits longer fails, is run again on the primary, and the
	// replica leaves the read pool for 30 health checks: a replica can
	// answer its health checks while reads of a table hang (a replicated
	// ALTER TABLE's lock, a LOCK TABLES, a stalled disk). Set it above the
	// longest read you send to replicas. DB_REPLICA_READ_TIMEOUT.
	ReplicaReadTimeout time.Duration

	// MaxOpenConns caps the connections to each member (default 32; a
	// negative value means no cap). MaxIdleConns defaults to MaxOpenConns.
	MaxOpenConns, MaxIdleConns int
	// ConnMaxLifetime recycles connections (default 5m).
	ConnMaxLifetime time.Duration
	// BusyTimeout is how long an SQLite statement waits for a lock held by
	// another connection or process (default 5s).
	BusyTimeout time.Duration
	// SQLiteMaxBytes bounds an SQLite database file (SQLite's
	// max_page_count, in 4 KiB pages, on every connection): a write that
	// would grow it further fails, and IsFull reports it. Anyone who can
	// use an app may make its tables grow; the bound keeps them from
	// filling the disk the NATS store shares. Default 1 GiB (DB_SQLITE_MAX_MB);
	// negative: no bound.
	SQLiteMaxBytes int64

	// ObserveRead, when set, is called for every read (Get, Select, Query)
	// with the role of the member it ran on and why it went there (sticky
	// scope, token fallback...), for metrics. It must be quick and safe for
	// concurrent use. Default: nil.
	ObserveRead func(target Role, why ReadReason)

	// TracerProvider starts a span for every query (tracing.go): its
	// statement, never its arguments, and for a read the target and
	// reason ObserveRead gets. Default: the OpenTelemetry global provider,
	// a no-op unless the program sets one.
	TracerProvider trace.TracerProvider

	// Logger receives pool changes (a replica leaving or joining) and
	// warnings. The zero value logs nothing.
	Logger zerolog.Logger
}

// ConfigFromEnv reads DB_CONNECTION, DB_WRITE_HOST, DB_READ_HOST, DB_HOST,
// DB_PORT, DB_DATABASE, DB_USERNAME, DB_PASSWORD, DB_STICKY,
// DB_MAX_REPLICA_LAG, DB_REPLICA_READ_TIMEOUT and DB_SQLITE_MAX_MB through getenv (os.Getenv, usually). Unset variables
// leave the Config defaults; a malformed one is an error naming it.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		Driver:    strings.ToLower(strings.TrimSpace(getenv("DB_CONNECTION"))),
		Database:  getenv("DB_DATABASE"),
		WriteHost: firstNonEmpty(getenv("DB_WRITE_HOST"), getenv("DB_HOST")),
		ReadHosts: splitList(getenv("DB_READ_HOST")),
		Username:  getenv("DB_USERNAME"),
		Password:  getenv("DB_PASSWORD"),
	}
	if err := placeholder.CheckSetting("DB_PASSWORD", c.Password); err != nil {
		return c, fmt.Errorf("readmodel: %w", err)
	}
	if v := getenv("DB_PORT"); v != "" {
		p, err := strconv.Atoi(v)
		if err != nil || p <= 0 || p > 65535 {
			return c, fmt.Errorf("readmodel: DB_PORT=%q is not a port number (1-65535)", v)
		}
		c.Port = p
	}
	switch strings.ToLower(getenv("DB_STICKY")) {
	case "", "1", "true", "yes", "on":
	case "0", "false", "no", "off":
		c.NoSticky = true
	default:
		return c, fmt.Errorf("readmodel: DB_STICKY=%q is not a boolean (true or false)", getenv("DB_STICKY"))
	}
	if v := getenv("DB_SQLITE_MAX_MB"); v != "" {
		mb, err := strconv.ParseInt(v, 10, 64)
		if err != nil || mb == 0 || mb < -1 || mb > 1<<40 {
			return c, fmt.Errorf("readmodel: DB_SQLITE_MAX_MB=%q is not a whole number of megabytes of at least 1 (or -1: no bound)", v)
		}
		c.SQLiteMaxBytes = mb << 20
	}
	if v := getenv("DB_REPLICA_READ_TIMEOUT"); v != "" {
		d, err := parseDuration(v)
		if v == "-1" {
			d, err = -1, nil
		}
		if err != nil || d == 0 || d < -1 {
			return c, fmt.Errorf("readmodel: DB_REPLICA_READ_TIMEOUT=%q is not a positive duration like 10s or 1m (or -1: no bound)", v)
		}
		c.ReplicaReadTimeout = d
	}
	if v := getenv("DB_MAX_REPLICA_LAG"); v != "" {
		d, err := parseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("readmodel: DB_MAX_REPLICA_LAG=%q is not a positive duration like 5s or 500ms", v)
		}
		c.MaxReplicaLag = d
	}
	return c, c.validate()
}

// parseDuration reads a Go duration, or plain seconds.
func parseDuration(v string) (time.Duration, error) {
	if n, err := strconv.Atoi(v); err == nil {
		if n > math.MaxInt64/int(time.Second) {
			return 0, fmt.Errorf("%d seconds is more than a duration holds", n)
		}
		return time.Duration(n) * time.Second, nil
	}
	return time.ParseDuration(v)
}

// validate reports the first field that breaks a rule.
func (c Config) validate() error {
	switch strings.ToLower(c.Driver) {
	case "", DriverSQLite, DriverMySQL, "mariadb":
	default:
		return fmt.Errorf("readmodel: Driver (DB_CONNECTION) %q: want %q or %q", c.Driver, DriverSQLite, DriverMySQL)
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("readmodel: Port %d: want 1-65535", c.Port)
	}
	if err := c.checkHost("WriteHost (DB_WRITE_HOST, DB_HOST)", c.WriteHost); err != nil {
		return err
	}
	for _, h := range c.ReadHosts {
		if err := c.checkHost("ReadHosts (DB_READ_HOST)", h); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{
		{"MaxReplicaLag", c.MaxReplicaLag}, {"CheckInterval", c.CheckInterval}, {"CheckTimeout", c.CheckTimeout},
		{"CausalWait", c.CausalWait}, {"DialTimeout", c.DialTimeout}, {"ConnMaxLifetime", c.ConnMaxLifetime},
		{"BusyTimeout", c.BusyTimeout},
	} {
		if f.d < 0 {
			return fmt.Errorf("readmodel: %s %v: must not be negative", f.name, f.d)
		}
	}
	return nil
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	c.Driver = strings.ToLower(c.Driver)
	if c.Driver == "" {
		c.Driver = DriverSQLite
	}
	if c.Driver == "mariadb" {
		c.Driver = DriverMySQL
	}
	if c.Database == "" {
		c.Database = DefaultSQLitePath
		if c.Driver == DriverMySQL {
			c.Database = "jetfleet"
		}
	}
	setDefault(&c.WriteHost, "127.0.0.1")
	setDefault(&c.Username, "root")
	if c.Port == 0 {
		c.Port = defaultPort
	}
	setDefaultDuration(&c.MaxReplicaLag, 5*time.Second)
	setDefaultDuration(&c.CheckInterval, time.Second)
	setDefaultDuration(&c.CheckTimeout, 2*time.Second)
	setDefaultDuration(&c.CausalWait, 100*time.Millisecond)
	setDefaultDuration(&c.DialTimeout, 2*time.Second)
	setDefaultDuration(&c.ReplicaReadTimeout, 10*time.Second)
	setDefaultDuration(&c.ConnMaxLifetime, 5*time.Minute)
	setDefaultDuration(&c.BusyTimeout, 5*time.Second)
	if c.SQLiteMaxBytes == 0 {
		c.SQLiteMaxBytes = 1 << 30
	}
	if c.MaxOpenConns == 0 {
		c.MaxOpenConns = 32
	}
	if c.MaxOpenConns < 0 {
		c.MaxOpenConns = 0 // database/sql: no cap
	}
	if c.MaxIdleConns == 0 {
		c.MaxIdleConns = c.MaxOpenConns
	}
	return c
}

func setDefault(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

func setDefaultDuration(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

// defaultPort is MySQL's and MariaDB's, for hosts that name none.
const defaultPort = 3306

// checkHost refuses a host that addr cannot make a host:port of: an
// empty name, a port that is not 1-65535, colons that are not an IPv6
// address's, or characters no host name has.
func (c Config) checkHost(field, host string) error {
	if strings.TrimSpace(host) == "" {
		return nil // WriteHost's default; an empty ReadHosts entry is dropped
	}
	c.Port = cmp.Or(c.Port, defaultPort) // the default is not applied yet
	h, port, err := net.SplitHostPort(c.addr(host))
	if err == nil {
		if n, perr := strconv.Atoi(port); perr != nil || n < 1 || n > 65535 {
			err = fmt.Errorf("port %q is not 1-65535", port)
		}
	}
	if err == nil && (h == "" || strings.ContainsAny(h, " /\\@?#") || strings.Contains(h, ":") && net.ParseIP(h) == nil) {
		err = errors.New("not a host name or IP address")
	}
	if err != nil {
		return fmt.Errorf("readmodel: %s %q: want host or host:port (%v)", field, host, err)
	}
	return nil
}

// addr turns "host" or "host:port" into "host:port".
func (c Config) addr(host string) string {
	host = strings.TrimSpace(host)
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), strconv.Itoa(c.Port))
}

// mysqlDSN is the driver DSN for one server, with the driver's read timeout
// (how long it waits for the server to send anything) if not 0.
func (c Config) mysqlDSN(addr string, readTimeout time.Duration) (string, error) {
	m := mysql.NewConfig()
	m.User, m.Passwd, m.Net, m.Addr, m.DBName = c.Username, c.Password, "tcp", addr, c.Database
	m.ParseTime = true
	m.InterpolateParams = true
	m.Timeout = c.DialTimeout
	m.ReadTimeout = readTimeout
	dsn := m.FormatDSN()
	if c.DSNParams != "" {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		dsn += sep + strings.TrimPrefix(c.DSNParams, "?")
	}
	if _, err := mysql.ParseDSN(dsn); err != nil {
		return "", fmt.Errorf("readmodel: DSNParams %q: %w", c.DSNParams, err)
	}
	return dsn, nil
}

// sqliteDSN is the modernc.org/sqlite DSN for the file: WAL so readers and
// the writer do not block each other, a busy timeout so concurrent writers
// (other processes too) wait instead of failing, foreign keys on, and
// BEGIN IMMEDIATE so a transaction takes the write lock up front.
// synchronous=NORMAL (the usual WAL setting) survives a crash of the
// process; a power loss may undo the last commits, never corrupt the file.
func (c Config) sqliteDSN() (string, error) {
	path := c.Database
	if strings.HasPrefix(path, "file:") || path == ":memory:" {
		return path, nil
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", fmt.Errorf("readmodel: Database %q: %w", path, err)
		}
	}
	// A new file is created for its owner alone; SQLite gives its WAL and
	// shared-memory files the database file's mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err == nil {
		err = f.Close()
	}
	if err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("readmodel: Database %q: %w", path, err)
	}
	q := fmt.Sprintf("_busy_timeout=%d&_journal_mode=WAL&_foreign_keys=1&_synchronous=NORMAL&_txlock=immediate",
		c.BusyTimeout.Milliseconds())
	if c.SQLiteMaxBytes > 0 {
		q += fmt.Sprintf("&_pragma=max_page_count(%d)", max(c.SQLiteMaxBytes/4096, 1))
	}
	return "file:" + path + "?" + q, nil
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
