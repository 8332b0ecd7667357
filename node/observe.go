package node

import (
	"context"
	"net"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/dashboard"
	"github.com/jetfleet/jetfleet/healthz"
	"github.com/jetfleet/jetfleet/metrics"
	"github.com/jetfleet/jetfleet/workers"
)

// observability is one process's metrics registry and the families the
// node's parts feed.
type observability struct {
	reg      *prometheus.Registry
	jobs     *metrics.Jobs
	sessions *metrics.Sessions
	reads    *metrics.DBReads
}

func newObservability() (*observability, error) {
	o := &observability{reg: metrics.NewRegistry()}
	var err error
	if o.jobs, err = metrics.NewJobs(o.reg); err != nil {
		return nil, err
	}
	if o.sessions, err = metrics.NewSessions(o.reg); err != nil {
		return nil, err
	}
	if o.reads, err = metrics.NewDBReads(o.reg); err != nil {
		return nil, err
	}
	return o, nil
}

// instrumentWorkers measures every job of a worker made from cfg and
// publishes its throughput samples for the dashboard until ctx ends; stop
// waits for the last sample. Once the worker's handlers are registered,
// limit(kinds) makes them the only kind names of the metrics and samples.
func (n *Node) instrumentWorkers(ctx context.Context, cfg *workers.Config) (limit func(kinds []string), stop func()) {
	sampler := metrics.NewSampler(n.s.JetStream, metrics.SamplerConfig{Replicas: cfg.Bus.Replicas, Logger: n.cfg.Logger})
	cfg.Middleware = append(cfg.Middleware, n.obs.jobs.Middleware(), sampler.Middleware())
	cfg.OnOutcome = metrics.Outcomes(n.obs.jobs.Outcome, sampler.Observe)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sampler.Run(sctx)
	}()
	limit = func(kinds []string) {
		n.obs.jobs.LimitKinds(kinds)
		sampler.LimitKinds(kinds)
	}
	return limit, func() { cancel(); <-done }
}

// mountWeb adds /metrics and the dashboard to a web node's mux and returns
// handler measured by the HTTP metrics. addr is where the node listens.
func (n *Node) mountWeb(mux *http.ServeMux, handler http.Handler, health *healthz.Health, openDashboard bool, addr net.Addr) (http.Handler, error) {
	in, err := bus.NewInspector(n.s.JetStream, n.s.Bus)
	if err != nil {
		return nil, err
	}
	if _, err := metrics.NewQueueCollector(n.obs.reg, in, metrics.QueueConfig{}); err != nil {
		return nil, err
	}
	if _, err := metrics.NewBatchCollector(n.obs.reg, in, metrics.QueueConfig{}); err != nil {
		return nil, err
	}
	if n.s.DB != nil {
		if err := metrics.RegisterDBMembers(n.obs.reg, n.s.DB.Members); err != nil {
			return nil, err
		}
	}
	httpm, err := metrics.NewHTTP(n.obs.reg, metrics.HTTPConfig{Draining: health.Draining})
	if err != nil {
		return nil, err
	}
	mux.Handle("GET /metrics", metrics.Handler(n.obs.reg))
	if err := n.mountDashboard(mux, openDashboard, addr); err != nil {
		return nil, err
	}
	return httpm.Middleware(handler), nil
}

// mountDashboard serves /jetfleet: with the JETFLEET_DASHBOARD_*
// credentials when set; open when asked, none are set and the node listens
// on loopback only (addr); else 404. The log says which, and why.
func (n *Node) mountDashboard(mux *http.ServeMux, open bool, addr net.Addr) error {
	cfg, err := dashboard.ConfigFromEnv(n.cfg.Getenv)
	if err != nil {
		return err
	}
	noCredentials := cfg.Token == "" && cfg.User == ""
	local := LoopbackOnly(addr)
	cfg.Open = open && noCredentials && local
	cfg.Bus = n.s.Bus
	cfg.Logger = n.cfg.Logger.With().Str("component", "dashboard").Logger()
	dash, err := dashboard.New(n.s.JetStream, cfg)
	if err != nil {
		return err
	}
	dash.Routes(mux)
	log := n.cfg.Logger
	switch {
	case cfg.Open:
		log.Info().Str("path", dash.Prefix()).Str("listen", addr.String()).
			Msg("dashboard open without credentials: the node listens on loopback only; set JETFLEET_DASHBOARD_TOKEN to require one")
	case dash.Enabled():
		log.Info().Str("path", dash.Prefix()).Msg("dashboard served to holders of the JETFLEET_DASHBOARD_* credentials")
	case open && !local:
		log.Warn().Str("listen", addr.String()).
			Msgf("dashboard off (404): the node listens on %s, which other machines can reach, so the dashboard needs credentials: set JETFLEET_DASHBOARD_TOKEN (at least %d characters) or JETFLEET_DASHBOARD_USER and _PASSWORD", addr, dashboard.MinSecretLen)
	default:
		log.Info().Msg("dashboard off (404): set JETFLEET_DASHBOARD_TOKEN or JETFLEET_DASHBOARD_USER and _PASSWORD to serve it")
	}
	return nil
}

// LoopbackOnly reports whether a listener on addr can be reached from
// this machine only: a loopback IP address (127.0.0.0/8, ::1) or a Unix
// socket. An unspecified address (":8080", 0.0.0.0, ::) is not.
func LoopbackOnly(addr net.Addr) bool {
	switch a := addr.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	case nil:
		return false
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
