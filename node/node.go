package node

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/readmodel"
)

// Config says where a node finds its settings and connections. The zero
// value reads the process environment and connects to NATS itself.
type Config struct {
	// Getenv reads settings. Default os.Getenv.
	Getenv func(string) string
	// DataDir holds nats.url (where `jetfleet up` records its NATS server)
	// and the default SQLite file. Default JETFLEET_DATA, else ./data.
	DataDir string
	// Logger receives the node's logs. The zero value logs nothing; Main
	// logs to stderr as LOG_LEVEL, LOG_FORMAT and LOG_FLUSH_INTERVAL say
	// (NewProcessLogger).
	Logger zerolog.Logger
	// Conn, when set, is the NATS connection to use instead of one made
	// from NATS_URL; the node does not close it, nor set its error
	// handler (LogAsyncErrors).
	Conn *nats.Conn
	// Replicas is the replica count of the streams and buckets the node
	// creates when they are missing (sessions, the app's). Default 1.
	Replicas int
	// Migrate applies App.Migrations when the node opens (as `jetfleet up`
	// does); otherwise run the `migrate` subcommand first.
	Migrate bool
	// Stdout and Stderr are where commands print. Default os.Stdout and
	// os.Stderr.
	Stdout, Stderr io.Writer
	// TracerProvider, when set, is the provider of the node's spans
	// instead of one made from the OTEL_* settings (tracing.go); the node
	// does not shut it down. Default: from OTEL_*, off when they are unset.
	TracerProvider trace.TracerProvider
}

func (c Config) withDefaults() Config {
	if c.Getenv == nil {
		c.Getenv = os.Getenv
	}
	c.DataDir = cmp.Or(c.DataDir, c.Getenv("JETFLEET_DATA"), "./data")
	c.Replicas = max(c.Replicas, 1)
	if c.Stdout == nil {
		c.Stdout = os.Stdout
	}
	if c.Stderr == nil {
		c.Stderr = os.Stderr
	}
	return c
}

// Node is one process of a service: its connections, its metrics and the
// app on them. Serve and Work may both run on one Node (`jetfleet up`).
type Node struct {
	app App
	cfg Config
	s   Services
	obs *observability
	tr  *tracing
	// closers undo what Open made, in reverse order.
	closers []func()
	relay   relay
}

// Open connects to NATS, opens the database when the app has migrations
// (applying them when cfg.Migrate is set) and runs the app's Init.
func Open(ctx context.Context, app App, cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	n := &Node{app: app, cfg: cfg}
	n.s = Services{Logger: cfg.Logger, Getenv: cfg.Getenv, DataDir: cfg.DataDir}
	if err := n.open(ctx); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

func (n *Node) open(ctx context.Context) error {
	var err error
	if n.obs, err = newObservability(); err != nil {
		return err
	}
	if err := n.openTracing(); err != nil {
		return err
	}
	if n.s.Bus, err = bus.ConfigFromEnv(n.cfg.Getenv); err != nil {
		return err
	}
	n.s.Bus.Replicas = n.cfg.Replicas
	n.s.Bus.OnDispatched = n.obs.jobs.Dispatched
	n.s.Bus.TracerProvider = n.s.TracerProvider
	n.s.Bus.HeadersFromContext = append(n.s.Bus.HeadersFromContext, readmodel.JobHeaders)
	if err := n.connect(); err != nil {
		return err
	}
	// The streams are created when missing, never changed: a node started
	// with defaults cannot undo an operator's R3 topology.
	if err := bus.EnsureQueues(ctx, n.s.JetStream, n.s.Bus); err != nil {
		return fmt.Errorf("NATS at %s: %w", ConnectedURL(n.s.Conn), err)
	}
	if n.s.Dispatcher, err = bus.NewDispatcher(n.s.JetStream, n.s.Bus); err != nil {
		return err
	}
	if n.app.Migrations != nil {
		if err := n.openDB(ctx); err != nil {
			return err
		}
	}
	if n.app.Init != nil {
		if err := n.app.Init(ctx, &n.s); err != nil {
			return n.initError(err)
		}
	}
	return nil
}

// initError is err from the app's Init, named with the app once: an app
// whose package prefixes its errors with its own name ("catalog: ...")
// is not named twice.
func (n *Node) initError(err error) error {
	if strings.HasPrefix(err.Error(), n.Name()+": ") {
		return fmt.Errorf("init: %w", err)
	}
	return fmt.Errorf("%s: init: %w", n.Name(), err)
}

// connect uses cfg.Conn, or connects from the environment.
func (n *Node) connect() error {
	nc := n.cfg.Conn
	if nc == nil {
		var err error
		if nc, _, err = ConnectNATS(n.cfg.Getenv, n.cfg.DataDir, n.Name()); err != nil {
			return err
		}
		nc.SetErrorHandler(LogAsyncErrors(n.cfg.Logger))
		n.onClose(nc.Close)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	n.s.Conn, n.s.JetStream = nc, js
	return nil
}

// openDB opens the read model from DB_* (SQLite at <data>/jetfleet.db by
// default) and, with cfg.Migrate, applies the app's migrations.
func (n *Node) openDB(ctx context.Context) error {
	db, err := OpenDB(ctx, n.cfg.Getenv, n.cfg.DataDir, func(c *readmodel.Config) {
		c.Logger = n.cfg.Logger
		c.ObserveRead = n.obs.reads.ObserveRead
		c.TracerProvider = n.s.TracerProvider
	})
	if err != nil {
		return err
	}
	n.s.DB = db
	n.onClose(func() { db.Close() })
	n.cfg.Logger.Info().Str("db", db.Driver()).Str("where", dbWhere(db, n.cfg)).Msg("read model ready")
	if err := n.openOutbox(); err != nil {
		return err
	}
	if !n.cfg.Migrate {
		return nil
	}
	applied, err := readmodel.MigrateAll(ctx, db, n.app.Migrations)
	if len(applied) > 0 {
		n.cfg.Logger.Info().Strs("applied", applied).Msg("database schema migrated")
	}
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}

// dbWhere says which database db is, for the log: the SQLite file, or the
// database on the primary.
func dbWhere(db *readmodel.DB, cfg Config) string {
	if db.Driver() == readmodel.DriverSQLite {
		cfgDB, _ := readmodel.ConfigFromEnv(cfg.Getenv)
		path := cmp.Or(cfgDB.Database, filepath.Join(cfg.DataDir, "jetfleet.db"))
		if abs, err := filepath.Abs(path); err == nil {
			return abs
		}
		return path
	}
	return cfg.Getenv("DB_DATABASE") + " on " + db.Members()[0].Addr
}

// OpenDB opens the read model the DB_* settings name; SQLite's file
// defaults to jetfleet.db in dataDir. tune, when set, adjusts the
// configuration before the database is opened.
func OpenDB(ctx context.Context, getenv func(string) string, dataDir string, tune func(*readmodel.Config)) (*readmodel.DB, error) {
	cfg, err := readmodel.ConfigFromEnv(getenv)
	if err != nil {
		return nil, err
	}
	if (cfg.Driver == "" || cfg.Driver == readmodel.DriverSQLite) && cfg.Database == "" {
		cfg.Database = filepath.Join(dataDir, "jetfleet.db")
	}
	if tune != nil {
		tune(&cfg)
	}
	db, err := readmodel.Open(ctx, cfg)
	return db, scrub(err, cfg.Password) // the driver's errors hold no password today; keep it so

}

// Services returns the node's connections, as the app's hooks see them.
func (n *Node) Services() *Services { return &n.s }

// Name is the app's name, or the binary's when the app has none.
func (n *Node) Name() string {
	if n.app.Name != "" {
		return n.app.Name
	}
	return filepath.Base(os.Args[0])
}

// Close closes what Open opened (not a Config.Conn given to it).
func (n *Node) Close() {
	for i := len(n.closers) - 1; i >= 0; i-- {
		n.closers[i]()
	}
	n.closers = nil
}

func (n *Node) onClose(f func()) { n.closers = append(n.closers, f) }
