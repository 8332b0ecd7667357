package node

import (
	"context"
	"net"

	"github.com/jetfleet/jetfleet/workers"
)

// WorkConfig configures a worker process.
type WorkConfig struct {
	// Worker is the worker's configuration (queues, concurrency, tries,
	// timeouts, backoff, drain). Empty Queues: App.Queues, else
	// ["default"]. Bus is the node's (Services.Bus) but for a Bus.AckWait
	// set here; it logs through the node's logger.
	Worker workers.Config
	// NoDiagnostics leaves out jetfleet's diagnostic kinds (jetfleet-noop,
	// jetfleet-sleep, jetfleet-fail), which `jetfleet dispatch` uses to
	// smoke-test a deployment.
	NoDiagnostics bool
	// MetricsListener, when set, serves Prometheus /metrics there.
	MetricsListener net.Listener
	// MetricsLimits bound the metrics server as ServeConfig.HTTPLimits
	// bound a web node's. The zero value is the defaults.
	MetricsLimits HTTPLimits
	// HealthListener, when set, serves the worker's probes there: /livez
	// (503 once a turn of the fetch loop has taken longer than
	// Worker.StuckAfter) and /readyz (503 while NATS is unreachable or a
	// queue's consumer does not answer). It may be MetricsListener: one
	// server then serves both.
	HealthListener net.Listener
}

// Work runs a worker process of the app's jobs until ctx ends or a stop
// condition of the worker is met, then drains (see workers.Worker.Run).
func (n *Node) Work(ctx context.Context, cfg WorkConfig) error {
	wcfg := cfg.Worker
	if len(wcfg.Queues) == 0 {
		wcfg.Queues = n.app.queues()
	}
	wcfg.Bus = n.s.Bus
	if cfg.Worker.Bus.AckWait != 0 {
		wcfg.Bus.AckWait = cfg.Worker.Bus.AckWait
	}
	wcfg.Logger = n.cfg.Logger
	if wcfg.TracerProvider == nil {
		wcfg.TracerProvider = n.s.TracerProvider
	}
	limitKinds, stopSamples := n.instrumentWorkers(ctx, &wcfg) // metrics and the dashboard's samples
	defer stopSamples()
	if n.s.DB != nil {
		wcfg.Middleware = append(wcfg.Middleware, CausalJobs) // handlers read their dispatcher's writes
		n.startRelay(ctx)
	}
	w := workers.New(n.s.JetStream, wcfg)
	if !cfg.NoDiagnostics {
		workers.RegisterDiagnostics(w)
	}
	if n.app.Jobs != nil {
		n.app.Jobs(&n.s, w)
	}
	limitKinds(w.Kinds())                // a made-up kind adds no series, no sample entry
	stopServers := n.workServers(cfg, w) // /metrics and the probes
	defer stopServers()
	return w.Run(ctx)
}
