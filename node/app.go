package node

import (
	"context"
	"io/fs"
	"net/http"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/healthz"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/sessions"
	"github.com/jetfleet/jetfleet/workers"
)

// App is a team's own service: what its main hands to Main. Every field is
// optional; the zero App is a node that serves only /up, /metrics and the
// dashboard and runs only jetfleet's diagnostic jobs.
type App struct {
	// Name names the program in usage lines and its NATS connections
	// ("<name> serve"). Default: the base name of the running binary.
	Name string
	// Init, when set, runs once per process after the node has connected
	// to NATS and opened the database, before Routes and Jobs: build what
	// they share there (the app's clients, buckets, settings).
	Init func(ctx context.Context, s *Services) error
	// Routes adds the app's HTTP routes to mux. They are served inside
	// the session middleware of s.Sessions; the node's /up, /livez,
	// /readyz, /metrics and /jetfleet (dashboard) routes stay outside it.
	Routes func(s *Services, mux *http.ServeMux)
	// Jobs registers the app's job handlers on w with workers.Register.
	Jobs func(s *Services, w *workers.Worker)
	// Migrations is the app's schema in readmodel.Migrate's layout
	// (sqlite/ and mysql/ folders of numbered .sql files). An app that
	// sets it gets Services.DB, from the DB_* settings (default SQLite at
	// <data>/jetfleet.db); `migrate` applies it.
	Migrations fs.FS
	// Queues are what `work` takes jobs from when --queue is not given,
	// highest priority first. Default: ["default"].
	Queues []string
	// Checks are more dependencies for /up to report, beside NATS, the
	// session bucket and the database.
	Checks []healthz.Check
}

// Services are the connections of one node process, handed to the app's
// Init, Routes and Jobs. The node owns them: the app must not close them.
type Services struct {
	// Conn and JetStream reach NATS (NATS_URL, NATS_USER, NATS_CREDS...,
	// else the URL `jetfleet up` wrote to <data>/nats.url).
	Conn      *nats.Conn
	JetStream jetstream.JetStream
	// Bus is the topology configuration read from JETFLEET_* (replicas,
	// retention, ack wait), for buckets and dispatchers the app makes;
	// what a dispatcher made from it stores is counted in /metrics.
	Bus bus.Config
	// Dispatcher enqueues jobs; what it stores is counted in /metrics.
	Dispatcher *bus.Dispatcher
	// DB is the read model; nil when the app has no Migrations.
	DB *readmodel.DB
	// Outbox dispatches jobs after a transaction on DB commits
	// (Outbox.Tx, then tx.Dispatch); every serve and work process relays
	// what a dead process left in it. Nil when DB is.
	Outbox *readmodel.Outbox
	// Sessions is the session manager of a web node (SESSION_*); nil in a
	// worker process and before Routes is called.
	Sessions *sessions.Manager
	// Logger is the process's logger (LOG_LEVEL, LOG_FORMAT,
	// LOG_FLUSH_INTERVAL).
	Logger zerolog.Logger
	// Getenv reads the app's own settings from the same environment.
	Getenv func(string) string
	// DataDir holds nats.url and the default SQLite file.
	DataDir string
	// TracerProvider is the node's trace provider, from the OTEL_*
	// settings: the app's own spans join the node's traces through it. It
	// is a no-op provider when tracing is off. The node sets no global
	// provider: an app whose libraries use OpenTelemetry's global one calls
	// otel.SetTracerProvider(s.TracerProvider) in Init.
	TracerProvider trace.TracerProvider
}

// queues is App.Queues, or ["default"].
func (a App) queues() []string {
	if len(a.Queues) == 0 {
		return []string{"default"}
	}
	return a.Queues
}
