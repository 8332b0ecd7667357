package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/dashboard"
	"github.com/jetfleet/jetfleet/healthz"
	"github.com/jetfleet/jetfleet/metrics"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/sessions"
	"github.com/jetfleet/jetfleet/workers"
)

// observability is one process's metrics registry, the hooks that feed it
// and the dashboard's mode. Commands that serve metrics set app.obs; every
// method is a no-op on a nil *observability, so the other commands are
// unchanged.
type observability struct {
	reg      *prometheus.Registry
	jobs     *metrics.Jobs
	sessions *metrics.Sessions
	reads    *metrics.DBReads
	// openDashboard serves /jetfleet without credentials when none are
	// configured (`up`); otherwise it needs JETFLEET_DASHBOARD_*.
	openDashboard bool
}

func newObservability(openDashboard bool) (*observability, error) {
	o := &observability{reg: metrics.NewRegistry(), openDashboard: openDashboard}
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

// instrumentBus counts the jobs a dispatcher made from cfg stores.
func (o *observability) instrumentBus(cfg *bus.Config) {
	if o != nil {
		cfg.OnDispatched = o.jobs.Dispatched
	}
}

// instrumentSessions counts the session store's operations.
func (o *observability) instrumentSessions(cfg *sessions.Config) {
	if o != nil {
		cfg.Observe = o.sessions.Observe
	}
}

// instrumentReadModel counts reads by target and reason.
func (o *observability) instrumentReadModel(cfg *readmodel.Config) {
	if o != nil {
		cfg.ObserveRead = o.reads.ObserveRead
	}
}

// instrumentWorkers measures every job of a worker made from cfg and starts
// publishing its throughput samples for the dashboard until ctx ends; stop
// waits for the last sample. Samples are published even without metrics.
func (o *observability) instrumentWorkers(ctx context.Context, a *app, js jetstream.JetStream, cfg *workers.Config) (stop func()) {
	sampler := metrics.NewSampler(js, metrics.SamplerConfig{Replicas: cfg.Bus.Replicas, Logger: a.log})
	cfg.OnOutcome = sampler.Observe
	if o != nil {
		cfg.Middleware = append(cfg.Middleware, o.jobs.Middleware())
		cfg.OnOutcome = metrics.Outcomes(o.jobs.Outcome, sampler.Observe)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sampler.Run(sctx)
	}()
	return func() { cancel(); <-done }
}

// mountWeb adds /metrics and the dashboard to a web node's mux and returns
// the node's handler measured by the HTTP metrics. Without observability it
// returns handler unchanged.
func (o *observability) mountWeb(a *app, mux *http.ServeMux, handler http.Handler, js jetstream.JetStream, db *readmodel.DB, health *healthz.Health) (http.Handler, error) {
	if o == nil {
		return handler, nil
	}
	in, err := bus.NewInspector(js, bus.Config{})
	if err != nil {
		return nil, err
	}
	if _, err := metrics.NewQueueCollector(o.reg, in, metrics.QueueConfig{}); err != nil {
		return nil, err
	}
	if err := metrics.RegisterDBMembers(o.reg, db.Members); err != nil {
		return nil, err
	}
	httpm, err := metrics.NewHTTP(o.reg, metrics.HTTPConfig{Draining: health.Draining})
	if err != nil {
		return nil, err
	}
	mux.Handle("GET /metrics", metrics.Handler(o.reg))
	if err := o.mountDashboard(a, mux, js); err != nil {
		return nil, err
	}
	return httpm.Middleware(handler), nil
}

// mountDashboard serves /jetfleet: with the JETFLEET_DASHBOARD_*
// credentials when set, open in `up` when not, else 404.
func (o *observability) mountDashboard(a *app, mux *http.ServeMux, js jetstream.JetStream) error {
	cfg, err := dashboard.ConfigFromEnv(a.getenv)
	if err != nil {
		return err
	}
	cfg.Open = o.openDashboard && cfg.Token == "" && cfg.User == ""
	cfg.Logger = a.log.With().Str("component", "dashboard").Logger()
	dash, err := dashboard.New(js, cfg)
	if err != nil {
		return err
	}
	dash.Routes(mux)
	switch {
	case cfg.Open:
		a.log.Info().Str("path", dash.Prefix()).Msg("dashboard open without credentials (jetfleet up); set JETFLEET_DASHBOARD_TOKEN to require one")
	case dash.Enabled():
		a.log.Info().Str("path", dash.Prefix()).Msg("dashboard served to holders of the JETFLEET_DASHBOARD_* credentials")
	default:
		a.log.Info().Msg("dashboard off (404): set JETFLEET_DASHBOARD_TOKEN or JETFLEET_DASHBOARD_USER and _PASSWORD to serve it")
	}
	return nil
}

// serveMetrics serves /metrics alone on addr (`work --metrics-listen`)
// until stop is called. It returns once listening.
func (o *observability) serveMetrics(a *app, addr string) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen for metrics on %s (--metrics-listen): %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics.Handler(o.reg))
	srv := newHTTPServer(a, mux)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error().Err(err).Msg("metrics server failed")
		}
	}()
	a.log.Info().Str("metrics_url", httpURL(ln.Addr())+"metrics").Msg("serving Prometheus metrics")
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-stopped
	}, nil
}
