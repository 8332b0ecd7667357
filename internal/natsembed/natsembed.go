// Package natsembed runs a NATS server with JetStream inside a jetfleet
// process. It is the only package of jetfleet that imports nats-server: the
// bus, workers and sessions packages speak to any NATS server through nats.go,
// so a service that links them does not link the server.
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // cron schedules' CRON_TZ= zones, on a machine without a zone database too

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"
)

// Config describes one embedded server. The zero value is a single node with
// JetStream on a random loopback port, storing in the server's default
// directory.
type Config struct {
	// Name is the server name, which must be unique in a cluster.
	// Default: a random name chosen by the server.
	Name string
	// Listen is the client address, host:port. A port of 0 or -1 picks a
	// free port. Default: 127.0.0.1 with a random port.
	Listen string
	// StoreDir is the JetStream store. Empty means the server's default,
	// $TMPDIR/nats/jetstream, which every such server shares: always set it
	// unless that is what you want.
	StoreDir string
	// ClusterName names the cluster; default "jetfleet" when ClusterListen
	// is set.
	ClusterName string
	// ClusterListen is the route address, host:port. Empty: no cluster.
	ClusterListen string
	// Routes are the other nodes' route URLs (nats://host:port).
	Routes []string
	// SyncInterval is how often JetStream file storage is flushed to disk
	// (fsync). Zero keeps the server default of two minutes: a power loss
	// (not a process crash) can lose up to that much acknowledged data on a
	// single node; an R3 cluster covers it with its replicas. SyncAlways
	// fsyncs every write, at a large cost in throughput.
	SyncInterval time.Duration
	// SyncAlways fsyncs every write. See SyncInterval.
	SyncAlways bool
	// User and Password, when User is set, are the only credentials the
	// server accepts from clients: a client without them, or with others,
	// is refused ("Authorization Violation"). Routes and the system account
	// are not affected. Default: no authentication.
	User, Password string
	// MaxPayload is the largest message the server accepts, in bytes.
	// Default: the server's default (1 MiB).
	MaxPayload int32
	// MonitorListen, when set, serves the server's HTTP monitoring
	// endpoint there (host:port; port 0 picks a free one): /varz, /jsz,
	// /healthz..., what KEDA's nats-jetstream scaler and Prometheus
	// exporters read. It has no authentication: keep it on loopback or a
	// private network. Empty: off (unless ConfigFile turns it on).
	MonitorListen string
	// ConfigFile, when set, is a nats-server configuration file parsed by
	// the server's own parser; the other fields then override what it sets
	// only where they are non-zero.
	ConfigFile string
	// Logger receives the server's log: errors at error level (fatal ones
	// too), warnings at warn, notices at info (at debug with
	// QuietNotices); its debug and trace lines are dropped. The zero value
	// logs nothing.
	Logger zerolog.Logger
	// QuietNotices logs the server's notices (its startup banner, routes
	// joining, ...) at debug instead of info.
	QuietNotices bool
}

// Server is a running embedded NATS server. Restart replaces the server it
// runs; its methods always speak of the current one.
type Server struct {
	cfg Config

	mu      sync.RWMutex
	srv     *server.Server
	bound   bound // the first server's ports and name, kept by Restart
	stopped bool  // Shutdown was called
}

// bound is what a restarted server keeps of the first: its name and the
// ports it bound (0: that listener is off).
type bound struct {
	name                 string
	client, route, monit int
}

func boundOf(srv *server.Server) bound {
	b := bound{name: srv.Name()}
	if a, ok := srv.Addr().(*net.TCPAddr); ok && a != nil {
		b.client = a.Port
	}
	if a := srv.ClusterAddr(); a != nil {
		b.route = a.Port
	}
	if a := srv.MonitorAddr(); a != nil {
		b.monit = a.Port
	}
	return b
}

// Start starts a server as configured and waits until it accepts clients.
func Start(cfg Config) (*Server, error) {
	opts, err := cfg.options()
	if err != nil {
		return nil, err
	}
	srv, err := cfg.start(opts)
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, srv: srv, bound: boundOf(srv)}, nil
}

// start runs a server with opts and waits until it accepts clients.
func (cfg Config) start(opts *server.Options) (*server.Server, error) {
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsembed: new server: %w", err)
	}
	notice := zerolog.InfoLevel
	if cfg.QuietNotices {
		notice = zerolog.DebugLevel
	}
	srv.SetLoggerV2(logAdapter{log: cfg.Logger, notice: notice}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("natsembed: server %q not ready for connections within 10s (listen %s:%d)%s", cfg.Name, opts.Host, opts.Port, portsTaken(opts))
	}
	return srv, nil
}

// portsTaken names the ports of opts that something else listens on: the
// usual reason a server is not ready.
func portsTaken(opts *server.Options) string {
	var taken []string
	for _, a := range []struct {
		host string
		port int
	}{{opts.Host, opts.Port}, {opts.Cluster.Host, opts.Cluster.Port}} {
		if a.port <= 0 {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(a.host, strconv.Itoa(a.port)))
		if err != nil {
			taken = append(taken, err.Error())
			continue
		}
		l.Close()
	}
	if len(taken) == 0 {
		return ""
	}
	return ": " + strings.Join(taken, "; ")
}

// current is the server running now.
func (s *Server) current() *server.Server {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.srv
}

// Restart shuts the server down cleanly and starts a new one with the same
// configuration, name and ports the first one bound (client, routes,
// monitoring), in the same process. Clients that reconnect (nats.go does by
// default) find it again; JetStream recovers its streams from the store, as
// after a process restart. It is how a stream's write error, which
// nats-server keeps until it restarts, is cleared (see WatchStore).
// When the new server cannot start (its port was taken meanwhile), the
// error says so and the server stays down; Restart may be called again.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("natsembed: restart after Shutdown")
	}
	opts, err := s.cfg.options()
	if err != nil {
		return err
	}
	opts.ServerName = s.bound.name
	if s.bound.client > 0 {
		opts.Port = s.bound.client
	}
	if s.bound.route > 0 {
		opts.Cluster.Port = s.bound.route
	}
	if s.bound.monit > 0 {
		opts.HTTPPort = s.bound.monit
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	srv, err := s.cfg.start(opts)
	if err != nil {
		return fmt.Errorf("natsembed: restart: %w", err)
	}
	s.srv = srv
	return nil
}

func (cfg Config) options() (*server.Options, error) {
	opts := &server.Options{}
	if cfg.ConfigFile != "" {
		o, err := server.ProcessConfigFile(cfg.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("natsembed: config file %s: %w", cfg.ConfigFile, err)
		}
		opts = o
	} else {
		opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	}
	opts.JetStream = true
	opts.NoSigs = true
	// jetfleet's subjects are mostly used once: a job's subject holds its
	// ID, so does its history record, and every ack has a subject of its
	// own. The server's subject caches (per account, per connection) then
	// miss on nearly every message and spend their time inserting and
	// evicting entries; without them a job costs the server less (about
	// 2 µs of CPU, measured with `jetfleet bench jobs`).
	opts.NoSublistCache = true
	if cfg.Name != "" {
		opts.ServerName = cfg.Name
	}
	if cfg.Listen != "" {
		host, port, err := SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("natsembed: listen: %w", err)
		}
		opts.Host, opts.Port = host, port
	}
	if cfg.StoreDir != "" {
		opts.StoreDir = cfg.StoreDir
	}
	if cfg.MaxPayload > 0 {
		opts.MaxPayload = cfg.MaxPayload
	}
	if cfg.User != "" {
		// The server keeps a bcrypt hash, not the password itself (and
		// does not warn about plaintext passwords). The lowest cost keeps
		// a connect fast: the password is random, not a guessable one.
		hash, err := bcrypt.GenerateFromPassword([]byte(cfg.Password), bcrypt.MinCost)
		if err != nil {
			return nil, fmt.Errorf("natsembed: hash the password: %w", err)
		}
		opts.Username, opts.Password = cfg.User, string(hash)
	}
	if cfg.SyncInterval > 0 {
		opts.SyncInterval = cfg.SyncInterval
	}
	if cfg.SyncAlways {
		opts.SyncAlways = true
	}
	if cfg.ClusterListen != "" {
		if err := cfg.clusterOptions(opts); err != nil {
			return nil, err
		}
	}
	if cfg.MonitorListen != "" {
		host, port, err := SplitHostPort(cfg.MonitorListen)
		if err != nil {
			return nil, fmt.Errorf("natsembed: monitor listen: %w", err)
		}
		opts.HTTPHost, opts.HTTPPort = host, port
	}
	return opts, nil
}

func (cfg Config) clusterOptions(opts *server.Options) error {
	host, port, err := SplitHostPort(cfg.ClusterListen)
	if err != nil {
		return fmt.Errorf("natsembed: cluster listen: %w", err)
	}
	opts.Cluster.Host, opts.Cluster.Port = host, port
	opts.Cluster.Name = cfg.ClusterName
	if opts.Cluster.Name == "" {
		opts.Cluster.Name = "jetfleet"
	}
	if opts.ServerName == "" {
		return errors.New("natsembed: a clustered node needs a name (--name)")
	}
	for _, r := range cfg.Routes {
		u, err := url.Parse(strings.TrimSpace(r))
		if err != nil || u.Host == "" {
			return fmt.Errorf("natsembed: route %q is not a URL like nats://127.0.0.1:6222", r)
		}
		opts.Routes = append(opts.Routes, u)
	}
	return nil
}

// SplitHostPort parses host:port where the port may be 0 or -1 (any free
// port). An empty host means all interfaces.
func SplitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q is not host:port: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("%q has a bad port %q", addr, p)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// ClientURL is the URL clients connect to, with the port actually bound.
func (s *Server) ClientURL() string { return s.current().ClientURL() }

// Name is the server's name.
func (s *Server) Name() string { return s.current().Name() }

// StoreDir is the JetStream store directory in use.
func (s *Server) StoreDir() string { return s.current().StoreDir() }

// ClusterAddr is the bound route address, or nil when not clustered.
func (s *Server) ClusterAddr() net.Addr {
	if a := s.current().ClusterAddr(); a != nil {
		return a
	}
	return nil // a nil *net.TCPAddr would be a non-nil interface
}

// MonitorURL is the base URL of the monitoring endpoint with the port
// actually bound ("http://127.0.0.1:8222"), or "" when it is off.
func (s *Server) MonitorURL() string {
	addr := s.current().MonitorAddr()
	if addr == nil {
		return ""
	}
	return "http://" + addr.String()
}

// JetStreamReady waits until JetStream is enabled and, in a cluster, has a
// meta leader, for at most timeout.
func (s *Server) JetStreamReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		srv := s.current()
		if srv.JetStreamEnabled() && (!srv.JetStreamIsClustered() || srv.JetStreamIsLeader() || s.hasMetaLeader()) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("natsembed: JetStream on %s not ready within %s", s.Name(), timeout)
}

func (s *Server) hasMetaLeader() bool {
	info, err := s.current().Jsz(&server.JSzOptions{})
	return err == nil && info.Meta != nil && info.Meta.Leader != ""
}

// Shutdown stops the server and waits for it to finish. A Restart after
// it does nothing.
func (s *Server) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stopped = true
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// Running reports whether the server still accepts clients.
func (s *Server) Running() bool { return s.current().Running() }

// logAdapter is the server's logger interface on a zerolog.Logger. A
// fatal line is logged at error level: it must not exit the process.
type logAdapter struct {
	log    zerolog.Logger
	notice zerolog.Level
}

func (a logAdapter) Noticef(format string, v ...any) { a.log.WithLevel(a.notice).Msgf(format, v...) }
func (a logAdapter) Warnf(format string, v ...any)   { a.log.Warn().Msgf(format, v...) }
func (a logAdapter) Fatalf(format string, v ...any)  { a.log.Error().Msgf(format, v...) }
func (a logAdapter) Errorf(format string, v ...any)  { a.log.Error().Msgf(format, v...) }
func (a logAdapter) Debugf(string, ...any)           {}
func (a logAdapter) Tracef(string, ...any)           {}
