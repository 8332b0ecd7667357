package mariadbtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/jetfleet/jetfleet/internal/freeport"
)

// startTimeout bounds how long one mariadbd may take to accept connections.
const startTimeout = 60 * time.Second

// testOverrides are the only settings the tests change from the shipped
// config files: memory and redo-log sizes, so that a server starts in well
// under a second and a pair fits beside other test suites.
func testOverrides() []string {
	return []string{
		"--innodb-buffer-pool-size=32M",
		"--innodb-log-file-size=8M",
		"--performance-schema=OFF",
	}
}

// Server is one real mariadbd process run by a test.
type Server struct {
	// Name is "primary" or "replica".
	Name string
	// Port is the TCP port on 127.0.0.1; it stays the same across restarts.
	Port int
	// DataDir is the server's data directory; it survives restarts.
	DataDir string

	cnf    string // the shipped config file, passed as --defaults-file
	runDir string // socket, pid file and error log (short path: sockets)
	admin  *sql.DB

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func newServer(name, cnf, dataDir, runDir string) (*Server, error) {
	s := &Server{Name: name, DataDir: dataDir, cnf: cnf, runDir: runDir}
	c := mysql.NewConfig()
	c.User, c.Net, c.Addr = "root", "unix", s.Socket()
	c.MultiStatements = true
	c.Timeout = 2 * time.Second
	db, err := sql.Open("mysql", c.FormatDSN())
	if err != nil {
		return nil, fmt.Errorf("mariadbtest: %s admin connection: %w", name, err)
	}
	db.SetMaxOpenConns(4)
	s.admin = db
	return s, nil
}

// Addr is the server's host:port on the loopback interface.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// Socket is the path of the server's unix socket.
func (s *Server) Socket() string { return filepath.Join(s.runDir, "mariadbd.sock") }

// Admin is a root connection pool over the unix socket (multiStatements on).
// It keeps working across restarts of the server.
func (s *Server) Admin() *sql.DB { return s.admin }

// ErrorLog returns the server's error log, for failure messages.
func (s *Server) ErrorLog() string {
	b, err := os.ReadFile(s.errLogPath())
	if err != nil {
		return fmt.Sprintf("(no error log: %v)", err)
	}
	return string(b)
}

func (s *Server) errLogPath() string { return filepath.Join(s.runDir, "error.log") }

// Running reports whether the mariadbd process is alive.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// start runs mariadbd and waits until it accepts connections. With pickPort
// it chooses a free port first, and tries again with another one if that
// port was taken meanwhile.
func (s *Server) start(pickPort bool) error {
	for attempt := 0; ; attempt++ {
		if pickPort {
			p, err := freeport.Port()
			if err != nil {
				return err
			}
			s.Port = p
		}
		err := s.startOnce()
		if err == nil {
			return nil
		}
		if !pickPort || attempt == 2 || !strings.Contains(err.Error(), "Address already in use") {
			return err
		}
	}
}

func (s *Server) startOnce() error {
	_ = os.Remove(s.Socket())
	logStart, _ := os.Stat(s.errLogPath())
	tmp, err := privateTmp(s.runDir)
	if err != nil {
		return err
	}
	args := append([]string{
		"--defaults-file=" + s.cnf, // must come first
		"--datadir=" + s.DataDir,
		"--tmpdir=" + tmp,
		"--port=" + strconv.Itoa(s.Port),
		"--bind-address=127.0.0.1",
		"--socket=" + s.Socket(),
		"--pid-file=" + filepath.Join(s.runDir, "mariadbd.pid"),
		"--log-error=" + s.errLogPath(),
		"--user=root",
	}, testOverrides()...)
	cmd := exec.Command(mariadbd(), args...)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("mariadbtest: start %s: %w", s.Name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	if err := s.waitReady(exited); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("mariadbtest: %s on port %d: %w\n--- error log ---\n%s", s.Name, s.Port, err, s.logSince(logStart))
	}
	return nil
}

// logSince returns the part of the error log written since the given stat.
func (s *Server) logSince(before os.FileInfo) string {
	log := s.ErrorLog()
	if before != nil && int(before.Size()) <= len(log) {
		log = log[before.Size():]
	}
	return log
}

func (s *Server) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("mariadbd exited during start-up")
		case <-time.After(50 * time.Millisecond):
		}
		if _, err := os.Stat(s.Socket()); err != nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := s.admin.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("not accepting connections after %s", startTimeout)
}

// stop ends the process: SIGTERM (a clean shutdown) or SIGKILL (a crash),
// and waits until it has exited.
func (s *Server) stop(kill bool) error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
		return nil
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("mariadbtest: %s did not stop within 30s of %v; killed", s.Name, sig)
	}
}

// mariadbd is the server binary: from PATH, else Debian's /usr/sbin.
func mariadbd() string {
	if p, err := exec.LookPath("mariadbd"); err == nil {
		return p
	}
	return "/usr/sbin/mariadbd"
}

// privateTmp is the tmp directory beside a server's files. The default,
// /tmp, is shared by every server on the machine, and the names of
// MariaDB's temporary tables there are not unique across them: one run's
// mariadb-install-db once lost its temporary table to another's.
func privateTmp(dir string) (string, error) {
	tmp := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return "", fmt.Errorf("mariadbtest: %w", err)
	}
	return tmp, nil
}

// installDB creates a fresh data directory in dir.
func installDB(dir string) error {
	tmp, err := privateTmp(filepath.Dir(dir))
	if err != nil {
		return err
	}
	args := append([]string{
		"--no-defaults",
		"--datadir=" + dir,
		"--tmpdir=" + tmp,
		"--user=root",
		"--auth-root-authentication-method=normal",
		"--skip-test-db",
	}, testOverrides()...)
	out, err := exec.Command("mariadb-install-db", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("mariadbtest: mariadb-install-db: %w\n%s", err, out)
	}
	return nil
}
