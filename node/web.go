package node

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/jetfleet/jetfleet/healthz"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/sessions"
)

// DefaultNATSDownAfter is how long NATS and the session bucket may fail
// before /up takes a web node out: a JetStream leader election after a
// server dies lasts a few seconds, every node sees it at once, and requests
// wait it out (sessions, uploads and dispatch retry), so the nodes stay in
// the balancer, reported degraded.
const DefaultNATSDownAfter = 15 * time.Second

// ServeConfig times a web node. The zero value is the recommended setting
// for a node behind a balancer, but for the listener, which is required.
type ServeConfig struct {
	// Listener is where the node serves HTTP.
	Listener net.Listener
	// DrainDelay is how long, after ctx ends, /up answers 503 while
	// requests are still served, so the balancer takes the node out.
	// Zero: 5s. Negative: none.
	DrainDelay time.Duration
	// Grace is how long in-flight requests may then take. Default 30s.
	Grace time.Duration
	// NATSDownAfter is how long NATS or the session bucket may fail
	// before /up answers 503 (until then it says degraded). Default
	// DefaultNATSDownAfter; negative: at once.
	NATSDownAfter time.Duration
	// AgentListener, when set, serves the HAProxy agent check (ready,
	// drain or down) until the node has drained.
	AgentListener net.Listener
	// OpenDashboard serves /jetfleet without credentials when none are
	// configured and Listener is loopback-only (`jetfleet up`; see
	// LoopbackOnly); otherwise the dashboard needs JETFLEET_DASHBOARD_*.
	OpenDashboard bool
	// HTTPLimits bound the server: read-header, read, write and idle
	// timeouts and the cap on open connections (JETFLEET_HTTP_*, read by
	// the serve command with HTTPLimitsFromEnv). The zero value is the
	// defaults.
	HTTPLimits
	// Serving, when set, is called once the node's handler is built and
	// its settings accepted, just before it serves: a program that starts
	// Serve in a goroutine can wait for it, or for Serve's error (a
	// session or dashboard setting refused), before it says it is up.
	Serving func()
}

// Serve runs a web node until ctx ends, then drains: the app's routes
// inside the session middleware, /up, /livez and /readyz (cached checks of
// NATS, the session bucket, the database and App.Checks), /metrics and the
// dashboard. It returns nil after a clean drain.
func (n *Node) Serve(ctx context.Context, cfg ServeConfig) error {
	if cfg.Listener == nil {
		return errors.New("node: ServeConfig.Listener is required")
	}
	health, handler, err := n.webHandler(ctx, cfg)
	if err != nil {
		return err
	}
	if cfg.Serving != nil {
		cfg.Serving()
	}
	n.startRelay(ctx)
	agentDone := n.serveAgent(ctx, health, cfg.AgentListener)
	n.cfg.Logger.Info().Str("http_url", HTTPURL(cfg.Listener.Addr())).Str("nats_url", ConnectedURL(n.s.Conn)).
		Str("app", n.Name()).Str("drain_delay", drainDelayText(cfg.DrainDelay)).Str("grace", cmp.Or(cfg.Grace, 30*time.Second).String()).
		Msg("web node serving its routes and /up")
	limits := cfg.HTTPLimits.withDefaults()
	err = health.Serve(ctx, n.httpServer(handler, limits), limitConns(cfg.Listener, limits.MaxConns), n.drainOptions(cfg))
	<-agentDone
	if err == nil {
		n.cfg.Logger.Info().Msg("drained; stopped")
	}
	return err
}

// drainDelayText is ServeConfig.DrainDelay as the drain will use it.
func drainDelayText(d time.Duration) string {
	switch {
	case d < 0:
		return "none"
	case d == 0:
		return "5s"
	}
	return d.String()
}

// webHandler builds the node's handler: sessions, the app's routes, the
// health routes and checks, metrics and the dashboard.
func (n *Node) webHandler(ctx context.Context, cfg ServeConfig) (*healthz.Health, http.Handler, error) {
	mux := http.NewServeMux()
	downAfter := max(cmp.Or(cfg.NATSDownAfter, DefaultNATSDownAfter), 0)
	servers, err := natsServerChecks(n.cfg.Getenv)
	if err != nil {
		return nil, nil, err
	}
	checks := append([]healthz.Check{natsCheck(n, downAfter)}, servers...)
	var app http.Handler
	if n.app.Routes != nil {
		sm, cookie, err := n.openSessions(ctx)
		if err != nil {
			return nil, nil, err
		}
		n.s.Sessions = sm
		checks = append(checks, healthz.Check{Name: "sessions", Critical: true, DownAfter: downAfter, Run: sm.Check})
		appMux := http.NewServeMux()
		n.app.Routes(&n.s, appMux)
		idem, err := n.openIdempotency(ctx, cookie)
		if err != nil {
			return nil, nil, err
		}
		app = withPattern(appMux, idem(sm.Middleware(n.sticky(appMux))))
	}
	if db := n.s.DB; db != nil {
		checks = append(checks,
			healthz.Check{Name: "db.primary", Critical: true, Run: db.Check},
			healthz.Check{Name: "db.replicas", Run: func(context.Context) error { return replicaHealth(db.Members()) }})
	}
	health := healthz.New(healthz.Config{}, append(checks, n.app.Checks...)...)
	health.Routes(mux) // outside the session middleware: probes write nothing
	if app != nil {
		mux.Handle("/", app)
	}
	handler, err := n.mountWeb(mux, health.Track(mux), health, cfg.OpenDashboard, cfg.Listener.Addr())
	return health, n.tr.wrapHTTP(handler), err
}

// withPattern serves h with the outer request's Pattern set to the route
// appMux will match, so that the HTTP metrics around the node's mux (which
// only sees its own "/" pattern) label requests by the app's routes.
func withPattern(appMux *http.ServeMux, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := appMux.Handler(r); pattern != "" {
			r.Pattern = pattern
		}
		h.ServeHTTP(w, r)
	})
}

// openSessions is the session manager of SESSION_*, its bucket made with
// the node's replica count unless SESSION_REPLICAS says otherwise, and the
// name of its cookie.
func (n *Node) openSessions(ctx context.Context) (*sessions.Manager, string, error) {
	scfg, err := sessions.ConfigFromEnv(n.cfg.Getenv)
	if err != nil {
		return nil, "", err
	}
	scfg.Replicas = cmp.Or(scfg.Replicas, n.cfg.Replicas)
	scfg.Logger = n.cfg.Logger.With().Str("component", "sessions").Logger()
	scfg.Observe = n.obs.sessions.Observe
	scfg.TracerProvider = n.s.TracerProvider
	sm, err := sessions.NewContext(ctx, n.s.JetStream, scfg)
	if err != nil {
		return nil, "", err // it says "sessions: ..." already
	}
	return sm, cmp.Or(scfg.Cookie.Name, "jetfleet_session"), nil // sessions' default name
}

// openIdempotency is the Idempotency-Key middleware of JETFLEET_IDEMPOTENCY_*
// (on by default; the identity when off), its keys scoped by the session
// cookie named cookie and the Authorization header.
func (n *Node) openIdempotency(ctx context.Context, cookie string) (func(http.Handler) http.Handler, error) {
	cfg, on, err := IdempotencyConfigFromEnv(n.cfg.Getenv)
	if err != nil || !on {
		return func(h http.Handler) http.Handler { return h }, err
	}
	cfg.ScopeCookie, cfg.Replicas = cookie, n.cfg.Replicas
	cfg.Logger = n.cfg.Logger.With().Str("component", "idempotency").Logger()
	idem, err := NewIdempotency(ctx, n.s.JetStream, cfg)
	if err != nil {
		return nil, err
	}
	return idem.Middleware, nil
}

// natsCheck fails while the connection is down or JetStream does not
// answer; it takes the node out after downAfter.
func natsCheck(n *Node, downAfter time.Duration) healthz.Check {
	nc, js := n.s.Conn, n.s.JetStream
	return healthz.Check{Name: "nats", Critical: true, DownAfter: downAfter, Run: func(ctx context.Context) error {
		if !nc.IsConnected() {
			return fmt.Errorf("NATS connection is %s", strings.ToLower(nc.Status().String()))
		}
		if _, err := js.AccountInfo(ctx); err != nil {
			return fmt.Errorf("JetStream does not answer: %w", err)
		}
		return nil
	}}
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

// httpServer is a server of the node bounded by limits, logging through
// the node's logger.
func (n *Node) httpServer(h http.Handler, limits HTTPLimits) *http.Server {
	srv := newHTTPServer(h, limits)
	srv.ErrorLog = log.New(n.cfg.Logger.With().Str("component", "http").Logger(), "", 0)
	return srv
}

// drainOptions turns the node's timing into healthz's.
func (n *Node) drainOptions(cfg ServeConfig) healthz.DrainOptions {
	return healthz.DrainOptions{DrainDelay: cfg.DrainDelay, Grace: cfg.Grace, Logger: n.cfg.Logger.With().Str("component", "drain").Logger()}
}

// serveAgent serves the HAProxy agent check on ln when it is set. The
// returned channel is closed when the agent has stopped (at once when off).
func (n *Node) serveAgent(ctx context.Context, health *healthz.Health, ln net.Listener) <-chan struct{} {
	done := make(chan struct{})
	if ln == nil {
		close(done)
		return done
	}
	go func() {
		defer close(done)
		if err := health.ServeAgent(ctx, ln); err != nil && !errors.Is(err, net.ErrClosed) {
			n.cfg.Logger.Error().Err(err).Msg("agent-check port failed")
		}
	}()
	n.cfg.Logger.Info().Str("agent", ln.Addr().String()).Msg("HAProxy agent check listening")
	return done
}

// HTTPURL is the URL a browser on this machine uses to reach addr.
func HTTPURL(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return "http://" + addr.String() + "/"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + "/"
}
