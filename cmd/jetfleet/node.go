package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/healthz"
	"github.com/jetfleet/jetfleet/internal/catalog"
	"github.com/jetfleet/jetfleet/internal/catalog/migrations"
	"github.com/jetfleet/jetfleet/internal/config"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/sessions"
)

// The HTTP node shared by `serve` and `up`: the catalog's routes inside the
// session middleware, the health routes outside it, and the drain.

// defaultHTTPListen is the HTTP address when the user names none.
// JETFLEET_HTTP_DEFAULT_LISTEN replaces it; it stays a default: `up` falls
// back to a free port when it is taken.
const defaultHTTPListen = ":8080"

func httpDefaultListen(getenv config.Getenv) string {
	return envOr(getenv, "JETFLEET_HTTP_DEFAULT_LISTEN", defaultHTTPListen)
}

// webNode is one HTTP node's handler and health.
type webNode struct {
	health  *healthz.Health
	handler http.Handler
}

// nodeOptions tunes a web node.
type nodeOptions struct {
	// replicas, when not 0, is the session bucket's replica count unless
	// SESSION_REPLICAS sets it.
	replicas int
	// natsDownAfter is how long NATS and the session bucket may fail
	// before /up takes the node out (see defaultNATSDownAfter).
	natsDownAfter time.Duration
}

// newWebNode builds the node: sessions from SESSION_*, the catalog's routes,
// and the health checks of every dependency.
func newWebNode(ctx context.Context, a *app, nc *nats.Conn, js jetstream.JetStream, db *readmodel.DB, cat *catalog.Catalog, o nodeOptions) (*webNode, error) {
	scfg, err := sessions.ConfigFromEnv(a.getenv)
	if err != nil {
		return nil, err
	}
	if scfg.Replicas == 0 {
		scfg.Replicas = o.replicas
	}
	scfg.Logger = a.log.With().Str("component", "sessions").Logger()
	a.obs.instrumentSessions(&scfg)
	sm, err := sessions.NewContext(ctx, js, scfg)
	if err != nil {
		return nil, fmt.Errorf("sessions: %w", err)
	}
	health := healthz.New(healthz.Config{}, healthChecks(nc, js, sm, db, o.natsDownAfter)...)
	mux := http.NewServeMux()
	health.Routes(mux) // outside the session middleware: probes write nothing
	cat.Routes(mux, sm)
	handler, err := a.obs.mountWeb(a, mux, health.Track(mux), js, db, health) // /metrics and /jetfleet
	if err != nil {
		return nil, err
	}
	return &webNode{health: health, handler: handler}, nil
}

// defaultNATSDownAfter is how long NATS and the session bucket may fail
// before /up takes the node out: a JetStream leader election after a server
// dies lasts a few seconds, every node sees it at once, and requests wait
// it out (sessions, uploads and dispatch retry), so the nodes stay in the
// balancer, reported degraded.
const defaultNATSDownAfter = 15 * time.Second

// healthChecks are the dependencies /up reports: NATS and JetStream, the
// session bucket (both after natsDownAfter) and the primary database take
// the node out when they fail; a replica out of the read pool only
// degrades it.
func healthChecks(nc *nats.Conn, js jetstream.JetStream, sm *sessions.Manager, db *readmodel.DB, natsDownAfter time.Duration) []healthz.Check {
	return []healthz.Check{
		{Name: "nats", Critical: true, DownAfter: natsDownAfter, Run: func(ctx context.Context) error {
			if !nc.IsConnected() {
				return fmt.Errorf("NATS connection is %s", strings.ToLower(nc.Status().String()))
			}
			if _, err := js.AccountInfo(ctx); err != nil {
				return fmt.Errorf("JetStream does not answer: %w", err)
			}
			return nil
		}},
		{Name: "sessions", Critical: true, DownAfter: natsDownAfter, Run: sm.Check},
		{Name: "db.primary", Critical: true, Run: db.Check},
		{Name: "db.replicas", Run: func(context.Context) error { return replicaHealth(db.Members()) }},
	}
}

// replicaHealth is a degraded error naming the replicas out of the read
// pool, or nil.
func replicaHealth(members []readmodel.MemberState) error {
	var out []string
	replicas := 0
	for _, m := range members {
		if m.Role != readmodel.RoleReplica {
			continue
		}
		replicas++
		if !m.InPool {
			out = append(out, fmt.Sprintf("%s (%s)", m.Addr, m.Reason))
		}
	}
	if len(out) == 0 {
		return nil
	}
	return fmt.Errorf("%d of %d replicas out of the read pool, reads go elsewhere: %s: %w",
		len(out), replicas, strings.Join(out, ", "), healthz.ErrDegraded)
}

// newHTTPServer is the node's server, logging through zerolog.
func newHTTPServer(a *app, h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.New(a.log.With().Str("component", "http").Logger(), "", 0),
	}
}

// drainOptions turns the flags into healthz's options: a delay of 0 means
// none (healthz reads 0 as its 5 s default).
func drainOptions(a *app, delay, grace time.Duration) healthz.DrainOptions {
	if delay == 0 {
		delay = -1
	}
	return healthz.DrainOptions{DrainDelay: delay, Grace: grace, Logger: a.log.With().Str("component", "drain").Logger()}
}

// httpURL is the URL a browser on this machine uses to reach addr.
func httpURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String() + "/"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}

// listenHTTP listens on addr. When the user did not choose addr (explicit
// false) and it is taken, it listens on a free port of the same host
// instead and fellBack says so.
func listenHTTP(addr string, explicit bool) (ln net.Listener, fellBack bool, err error) {
	ln, err = net.Listen("tcp", addr)
	if err == nil {
		return ln, false, nil
	}
	if explicit {
		return nil, false, fmt.Errorf("cannot listen for HTTP on %s (--listen): %w; choose another address with --listen, or stop the process holding it", addr, err)
	}
	host, _, splitErr := net.SplitHostPort(addr)
	if splitErr != nil {
		return nil, false, fmt.Errorf("--listen %q: %w", addr, splitErr)
	}
	ln, err2 := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err2 != nil {
		return nil, false, fmt.Errorf("cannot listen for HTTP on %s (%w), nor on a free port (%w)", addr, err, err2)
	}
	return ln, true, nil
}

// openCatalogDB opens the read model of dataDir (DB_* settings, else SQLite
// at <dataDir>/jetfleet.db) and, when migrate is set, applies the schema.
func openCatalogDB(ctx context.Context, a *app, dataDir string, migrate bool) (*readmodel.DB, error) {
	in := *a
	in.dataDir = dataDir
	db, err := openReadModel(ctx, &in)
	if err != nil {
		return nil, err
	}
	if !migrate {
		return db, nil
	}
	applied, err := readmodel.Migrate(ctx, db, migrations.FS)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	if len(applied) > 0 {
		a.log.Info().Strs("applied", applied).Msg("database schema migrated")
	}
	return db, nil
}

// checkSchema warns when the database lacks the catalog's tables, which
// `jetfleet migrate` creates: every request would fail otherwise.
func checkSchema(ctx context.Context, a *app, db *readmodel.DB) {
	var e string
	err := db.Get(readmodel.UsePrimary(ctx), &e, "SELECT error FROM item_images LIMIT 1")
	if err != nil && !errors.Is(err, sql.ErrNoRows) && ctx.Err() == nil {
		a.log.Warn().Err(err).Msg("the database lacks the catalog's schema: run `jetfleet migrate` (with the same DB_* settings)")
	}
}

// catalogConfig is the catalog's configuration from the environment:
// JETFLEET_IMAGE_REPLICAS, JETFLEET_MAX_UPLOAD_MB, JETFLEET_MAX_UPLOAD_FILES.
func catalogConfig(a *app) (catalog.Config, error) {
	replicas, err := config.Int(a.getenv, "JETFLEET_IMAGE_REPLICAS", 1)
	if err != nil {
		return catalog.Config{}, err
	}
	maxMB, err := config.Int(a.getenv, "JETFLEET_MAX_UPLOAD_MB", 32)
	if err != nil {
		return catalog.Config{}, err
	}
	maxFiles, err := config.Int(a.getenv, "JETFLEET_MAX_UPLOAD_FILES", 10)
	if err != nil {
		return catalog.Config{}, err
	}
	if replicas < 1 || maxMB < 1 || maxFiles < 1 {
		return catalog.Config{}, fmt.Errorf("JETFLEET_IMAGE_REPLICAS, JETFLEET_MAX_UPLOAD_MB and JETFLEET_MAX_UPLOAD_FILES must be at least 1 (got %d, %d, %d)", replicas, maxMB, maxFiles)
	}
	cfg := catalog.Config{
		ImageReplicas: replicas, MaxUploadBytes: int64(maxMB) << 20, MaxFiles: maxFiles,
		Logger: a.log.With().Str("component", "catalog").Logger(),
	}
	a.obs.instrumentBus(&cfg.Bus)
	return cfg, nil
}
