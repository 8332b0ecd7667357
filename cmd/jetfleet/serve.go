package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jetfleet/jetfleet/internal/catalog"
)

// serveOptions are the settings of `jetfleet serve`.
type serveOptions struct {
	listen      string
	agentListen string
	dataDir     string
	drainDelay  time.Duration
	grace       time.Duration
	natsDown    time.Duration
}

// runServe is `jetfleet serve`: one stateless web node of the reference
// app. Run as many as needed behind a balancer that polls /up; on SIGTERM
// the node reports 503 at once, keeps serving for --drain-delay, then
// finishes its in-flight requests within --grace and exits 0.
func runServe(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "serve", "serve [--listen :8080] [--drain-delay 5s] [--grace 30s] [--nats-down-after 15s] [--agent-listen addr] [--data ./data]\n\n"+
		"Serves the reference app (the catalog) and /up, /livez, /readyz. NATS from NATS_URL (else <data>/nats.url),\n"+
		"the database from DB_* (else SQLite at <data>/jetfleet.db; run `jetfleet migrate` first), sessions from SESSION_*.")
	var o serveOptions
	fs.StringVar(&o.listen, "listen", httpDefaultListen(a.getenv), "HTTP address")
	fs.DurationVar(&o.drainDelay, "drain-delay", 5*time.Second, "after SIGTERM, how long /up answers 503 while requests are still served, so the balancer takes the node out (0: none)")
	fs.DurationVar(&o.grace, "grace", 30*time.Second, "then, how long in-flight requests may take to finish")
	fs.DurationVar(&o.natsDown, "nats-down-after", defaultNATSDownAfter, "how long NATS or the session bucket may fail (a leader election) before /up answers 503; until then it says degraded")
	fs.StringVar(&o.agentListen, "agent-listen", "", "address of an HAProxy agent-check port (answers ready, drain or down); off when empty")
	fs.StringVar(&o.dataDir, "data", a.dataDir, "data directory: nats.url and the SQLite file when NATS_URL and DB_* are unset")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(fs, rest); err != nil {
		return err
	}
	if o.natsDown < 0 {
		return fmt.Errorf("--nats-down-after must be 0 or more (got %s)", o.natsDown)
	}
	if o.drainDelay < 0 || o.grace <= 0 {
		return fmt.Errorf("--drain-delay must be 0 or more and --grace more than 0 (got %s and %s)", o.drainDelay, o.grace)
	}
	if a.obs, err = newObservability(false); err != nil { // /metrics; /jetfleet only with credentials
		return err
	}
	return serve(ctx, a, o)
}

// serve connects to every dependency, then serves until ctx ends.
func serve(ctx context.Context, a *app, o serveOptions) error {
	ln, _, err := listenHTTP(o.listen, true)
	if err != nil {
		return err
	}
	defer ln.Close()
	nc, js, err := connectBus(ctx, a, o.dataDir, "jetfleet serve")
	if err != nil {
		return err
	}
	defer nc.Close()
	db, err := openCatalogDB(ctx, a, o.dataDir, false)
	if err != nil {
		return err
	}
	defer db.Close()
	checkSchema(ctx, a, db)
	ccfg, err := catalogConfig(a)
	if err != nil {
		return err
	}
	cat, err := catalog.New(ctx, js, db, ccfg)
	if err != nil {
		return err
	}
	node, err := newWebNode(ctx, a, nc, js, db, cat, nodeOptions{natsDownAfter: o.natsDown})
	if err != nil {
		return err
	}
	agentDone, err := startAgent(ctx, a, node, o.agentListen)
	if err != nil {
		return err
	}
	a.log.Info().Str("http_url", httpURL(ln.Addr())).Str("nats_url", nc.ConnectedUrlRedacted()).
		Str("db", db.Driver()).Interface("db_members", db.Members()).Str("agent", o.agentListen).
		Dur("drain_delay", o.drainDelay).Dur("grace", o.grace).
		Msg("serving the catalog and /up")
	err = node.health.Serve(ctx, newHTTPServer(a, node.handler), ln, drainOptions(a, o.drainDelay, o.grace))
	<-agentDone
	if err == nil {
		a.log.Info().Msg("drained; stopped")
	}
	return err
}

// startAgent serves the HAProxy agent-check port when addr is set. The
// returned channel is closed when the agent has stopped (at once when off).
func startAgent(ctx context.Context, a *app, node *webNode, addr string) (<-chan struct{}, error) {
	done := make(chan struct{})
	if addr == "" {
		close(done)
		return done, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen for the agent check on %s (--agent-listen): %w", addr, err)
	}
	go func() {
		defer close(done)
		if err := node.health.ServeAgent(ctx, ln); err != nil && !errors.Is(err, net.ErrClosed) {
			a.log.Error().Err(err).Msg("agent-check port failed")
		}
	}()
	a.log.Info().Str("agent", ln.Addr().String()).Msg("HAProxy agent check listening")
	return done, nil
}
