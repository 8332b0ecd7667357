// Package mariadbtest starts a real MariaDB primary and a real replica for
// tests: two mariadbd processes from the machine's installation, each with a
// data directory in a temporary folder and a random loopback port, started
// with the config files that ship in deploy/mariadb and joined by GTID
// replication set up with deploy/mariadb's SQL scripts, so what ships is
// what is tested. Nothing here is a mock.
//
// Tests skip (with a message naming the Debian package) when mariadbd is not
// installed. CI installs mariadb-server (or just mariadb-server-core and
// mariadb-client-core).
package mariadbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// AppUser is the application account the pair is set up with (by
// deploy/mariadb/setup-primary.sql), with the grants that file documents.
const AppUser = "jetfleet"

// Pair is a running primary and replica.
type Pair struct {
	Primary, Replica *Server
	// Password is AppUser's password.
	Password string

	deployDir string
	base      string
	replPass  string
	databases atomic.Int64
}

// Available reports why a pair cannot be started here, or nil.
func Available() error {
	if _, err := os.Stat(mariadbd()); err != nil {
		return errors.New("mariadbd is not installed (Debian/Ubuntu: apt-get install mariadb-server)")
	}
	if _, err := exec.LookPath("mariadb-install-db"); err != nil {
		return errors.New("mariadb-install-db is not installed (Debian/Ubuntu: apt-get install mariadb-server)")
	}
	return nil
}

// Start runs a pair for the test and stops it at the test's cleanup. It
// skips the test when MariaDB is not installed.
func Start(t testing.TB) *Pair {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("mariadbtest: %v", err)
	}
	p, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// New runs a pair that the caller stops with Close; for a pair shared by a
// whole test binary (TestMain). Check Available first to skip cleanly.
func New() (p *Pair, err error) {
	deployDir, err := findDeployDir()
	if err != nil {
		return nil, err
	}
	base, err := os.MkdirTemp("", "mdb") // short: unix socket paths are limited
	if err != nil {
		return nil, fmt.Errorf("mariadbtest: %w", err)
	}
	p = &Pair{deployDir: deployDir, base: base, Password: randomHex(), replPass: randomHex()}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.Close())
		}
	}()
	if p.Primary, err = p.newServer("primary"); err != nil {
		return p, err
	}
	if p.Replica, err = p.newServer("replica"); err != nil {
		return p, err
	}
	if err = installDB(p.Primary.DataDir); err != nil {
		return p, err
	}
	// Both start from the same freshly installed (and not binlogged) state.
	if out, err := exec.Command("cp", "-a", p.Primary.DataDir, p.Replica.DataDir).CombinedOutput(); err != nil {
		return p, fmt.Errorf("mariadbtest: copy data dir: %w: %s", err, out)
	}
	replicaErr := make(chan error, 1)
	go func() { replicaErr <- p.Replica.start(true) }()
	err = errors.Join(p.Primary.start(true), <-replicaErr)
	if err != nil {
		return p, err
	}
	return p, p.setUpReplication()
}

func (p *Pair) newServer(name string) (*Server, error) {
	runDir := filepath.Join(p.base, name)
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, fmt.Errorf("mariadbtest: %w", err)
	}
	return newServer(name, filepath.Join(p.deployDir, name+".cnf"), filepath.Join(runDir, "data"), runDir)
}

// setUpReplication runs deploy/mariadb/setup-primary.sql on the primary and
// setup-replication.sql on the replica, then waits for the replica to apply
// everything.
func (p *Pair) setUpReplication() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	vars := map[string]string{
		"APP_DATABASE": "jetfleet", "APP_USER": AppUser, "APP_PASSWORD": p.Password, "APP_HOST": "%",
		"REPL_USER": "repl", "REPL_PASSWORD": p.replPass, "REPL_HOST": "%",
		"PRIMARY_HOST": "127.0.0.1", "PRIMARY_PORT": strconv.Itoa(p.Primary.Port),
	}
	for _, step := range []struct {
		srv  *Server
		file string
	}{{p.Primary, "setup-primary.sql"}, {p.Replica, "setup-replication.sql"}} {
		sqlText, err := p.render(step.file, vars)
		if err != nil {
			return err
		}
		if _, err := step.srv.admin.ExecContext(ctx, sqlText); err != nil {
			return fmt.Errorf("mariadbtest: %s on the %s: %w", step.file, step.srv.Name, err)
		}
	}
	return p.SyncReplica(ctx)
}

// render reads a deploy/mariadb SQL file and fills in its ${...} placeholders.
func (p *Pair) render(file string, vars map[string]string) (string, error) {
	b, err := os.ReadFile(filepath.Join(p.deployDir, file))
	if err != nil {
		return "", fmt.Errorf("mariadbtest: %w", err)
	}
	var missing []string
	out := os.Expand(string(b), func(k string) string {
		v, ok := vars[k]
		if !ok {
			missing = append(missing, k)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("mariadbtest: %s: no value for %v", file, missing)
	}
	return out, nil
}

// DSN is a go-sql-driver/mysql DSN for AppUser on s, database db.
func (p *Pair) DSN(s *Server, db string) string {
	c := mysql.NewConfig()
	c.User, c.Passwd, c.Net, c.Addr, c.DBName = AppUser, p.Password, "tcp", s.Addr(), db
	c.ParseTime = true
	return c.FormatDSN()
}

// PrimaryDSN is DSN for the primary.
func (p *Pair) PrimaryDSN(db string) string { return p.DSN(p.Primary, db) }

// ReplicaDSN is DSN for the replica.
func (p *Pair) ReplicaDSN(db string) string { return p.DSN(p.Replica, db) }

// Env is the DB_* environment (KEY=VALUE) that points jetfleet at the pair
// and database db, for exec.Cmd.Env.
func (p *Pair) Env(db string) []string {
	return []string{
		"DB_CONNECTION=mysql",
		"DB_WRITE_HOST=" + p.Primary.Addr(),
		"DB_READ_HOST=" + p.Replica.Addr(),
		"DB_DATABASE=" + db,
		"DB_USERNAME=" + AppUser,
		"DB_PASSWORD=" + p.Password,
	}
}

// NewDatabase creates an empty database that AppUser owns, waits until the
// replica has it too, and returns its name. Each test gets its own, so tests
// sharing a pair do not see each other's tables.
func (p *Pair) NewDatabase(t testing.TB) string {
	t.Helper()
	word := func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}
	name := fmt.Sprintf("t%d_%s", p.databases.Add(1), strings.Map(word, strings.ToLower(t.Name())))
	if len(name) > 60 {
		name = name[:60]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	q := fmt.Sprintf("CREATE DATABASE `%s`; GRANT ALL PRIVILEGES ON `%s`.* TO '%s'@'%%'", name, name, AppUser)
	if _, err := p.Primary.admin.ExecContext(ctx, q); err != nil {
		t.Fatalf("mariadbtest: create database %s: %v", name, err)
	}
	if err := p.SyncReplica(ctx); err != nil {
		t.Fatal(err)
	}
	return name
}

// SyncReplica waits until the replica has applied everything the primary
// has logged so far (MASTER_GTID_WAIT), or ctx ends.
func (p *Pair) SyncReplica(ctx context.Context) error {
	var pos string
	if err := p.Primary.admin.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&pos); err != nil {
		return fmt.Errorf("mariadbtest: primary position: %w", err)
	}
	timeout := 30.0
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl).Seconds()
	}
	var res int
	if err := p.Replica.admin.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, ?)", pos, timeout).Scan(&res); err != nil {
		return fmt.Errorf("mariadbtest: wait for replica to reach %s: %w", pos, err)
	}
	if res != 0 {
		return fmt.Errorf("mariadbtest: replica did not reach %s in time\n%s", pos, p.Replica.ErrorLog())
	}
	return nil
}

// StopReplica stops the replica's process: a clean shutdown, or with kill a
// SIGKILL (a crash). The data directory and port are kept for StartReplica.
func (p *Pair) StopReplica(t testing.TB, kill bool) {
	t.Helper()
	if err := p.Replica.stop(kill); err != nil {
		t.Fatal(err)
	}
}

// StartReplica starts the replica again on the same data directory and
// port; replication resumes from its stored GTID position.
func (p *Pair) StartReplica(t testing.TB) {
	t.Helper()
	if err := p.Replica.start(false); err != nil {
		t.Fatal(err)
	}
}

// StopSQLThread pauses applying replicated changes (STOP SLAVE SQL_THREAD);
// the replica keeps receiving them, and falls behind.
func (p *Pair) StopSQLThread(t testing.TB) { p.replicaAdmin(t, "STOP SLAVE SQL_THREAD") }

// StartSQLThread resumes applying replicated changes.
func (p *Pair) StartSQLThread(t testing.TB) { p.replicaAdmin(t, "START SLAVE SQL_THREAD") }

func (p *Pair) replicaAdmin(t testing.TB, stmt string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := p.Replica.admin.ExecContext(ctx, stmt); err != nil {
		t.Fatalf("mariadbtest: %s: %v", stmt, err)
	}
}

// Reset brings a shared pair back to its initial state: the replica running,
// both replication threads on, and caught up with the primary.
func (p *Pair) Reset(t testing.TB) {
	t.Helper()
	if !p.Replica.Running() {
		p.StartReplica(t)
	}
	p.replicaAdmin(t, "START SLAVE")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.SyncReplica(ctx); err != nil {
		t.Fatal(err)
	}
}

// Close stops both servers and removes their files.
func (p *Pair) Close() error {
	var errs []error
	for _, s := range []*Server{p.Replica, p.Primary} {
		if s == nil {
			continue
		}
		errs = append(errs, s.admin.Close(), s.stop(false))
	}
	errs = append(errs, os.RemoveAll(p.base))
	return errors.Join(errs...)
}

// findDeployDir walks up from the working directory to the module root and
// returns its deploy/mariadb.
func findDeployDir() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("mariadbtest: %w", err)
	}
	for {
		d := filepath.Join(dir, "deploy", "mariadb")
		if _, err := os.Stat(filepath.Join(d, "primary.cnf")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("mariadbtest: deploy/mariadb not found above the working directory")
		}
		dir = parent
	}
}

func randomHex() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
