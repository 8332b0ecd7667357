package node

// The probes of a worker process (`work --health-listen`): /livez fails
// when the worker's fetch loop is stuck (workers.Worker.Live), /readyz
// (and /up) when NATS is unreachable or a queue's consumer does not answer
// (workers.Worker.Ready), with healthz's cached, single-flight checks and
// its report formats.

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/jetfleet/jetfleet/healthz"
	"github.com/jetfleet/jetfleet/metrics"
	"github.com/jetfleet/jetfleet/workers"
)

// workerHealth registers a worker's probes on mux.
func (n *Node) workerHealth(mux *http.ServeMux, w *workers.Worker) {
	ready := healthz.New(healthz.Config{},
		natsCheck(n, 0),
		healthz.Check{Name: "queues", Critical: true, Timeout: 2 * time.Second, Run: w.Ready})
	probes := http.NewServeMux()
	ready.Routes(probes) // /up, /readyz; its /livez (always ok) is not used
	mux.Handle("GET /readyz", probes)
	mux.Handle("GET /up", probes)
	mux.HandleFunc("GET /livez", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Cache-Control", "no-store")
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := w.Live(); err != nil {
			rw.WriteHeader(http.StatusServiceUnavailable)
			rw.Write([]byte(err.Error() + "\n"))
			return
		}
		rw.Write([]byte("ok\n"))
	})
}

// workServers serves a worker's /metrics and probes on the listeners of
// cfg, one server per listener (both on one when they are the same),
// until stop is called.
func (n *Node) workServers(cfg WorkConfig, w *workers.Worker) (stop func()) {
	var stops []func()
	serve := func(ln net.Listener, metricsToo, probes bool) {
		mux := http.NewServeMux()
		var what []string
		if metricsToo {
			mux.Handle("GET /metrics", metrics.Handler(n.obs.reg))
			what = append(what, "/metrics")
		}
		if probes {
			n.workerHealth(mux, w)
			what = append(what, "/livez", "/readyz")
		}
		stops = append(stops, n.serveHTTP(ln, mux, cfg.MetricsLimits, strings.Join(what, " ")))
	}
	switch {
	case cfg.HealthListener != nil && cfg.HealthListener == cfg.MetricsListener:
		serve(cfg.HealthListener, true, true)
	default:
		if cfg.MetricsListener != nil {
			serve(cfg.MetricsListener, true, false)
		}
		if cfg.HealthListener != nil {
			serve(cfg.HealthListener, false, true)
		}
	}
	return func() {
		for _, s := range stops {
			s()
		}
	}
}

// serveHTTP serves mux on ln, bounded by limits, until the returned stop
// is called.
func (n *Node) serveHTTP(ln net.Listener, mux *http.ServeMux, limits HTTPLimits, what string) (stop func()) {
	limits = limits.withDefaults()
	srv := n.httpServer(mux, limits)
	ln = limitConns(ln, limits.MaxConns)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.cfg.Logger.Error().Err(err).Str("serving", what).Msg("worker's HTTP server failed")
		}
	}()
	n.cfg.Logger.Info().Str("url", HTTPURL(ln.Addr())).Str("serving", what).Msg("worker serving " + what)
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-stopped
	}
}
