package main

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/catalog"
	"github.com/jetfleet/jetfleet/internal/wire"
	"github.com/jetfleet/jetfleet/workers"
)

// runWork is `jetfleet work`: one worker process of the fleet. Start as
// many as needed, anywhere; they share each queue's durable consumer.
func runWork(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "work", "work [--queue high,default] [--concurrency 10] [--tries 3] [--timeout 60s] [--backoff 1s,10s,60s] [--grace 30s] [--max-jobs N] [--max-time 1h] [--stop-when-empty] [--metrics-listen :9464]")
	queues := fs.String("queue", "default", "queues in priority order (strict), or with weights: high:6,default:3,low:1")
	concurrency := fs.Int("concurrency", 10, "jobs run at once by this process")
	tries := fs.Int("tries", 3, "deliveries a job may use unless it sets its own")
	timeout := fs.Duration("timeout", 60*time.Second, "time limit of one attempt unless the job sets its own")
	backoff := fs.String("backoff", "", "delays before retries, e.g. 1s,10s,60s (default exponential from 1s with jitter)")
	grace := fs.Duration("grace", 30*time.Second, "on SIGTERM, how long running jobs may finish before they are handed back")
	maxJobs := fs.Int("max-jobs", 0, "stop after this many jobs (0: no limit)")
	maxTime := fs.Duration("max-time", 0, "stop after running this long (0: no limit)")
	stopWhenEmpty := fs.Bool("stop-when-empty", false, "stop when the queues have no ready job")
	envBus, err := busSettings(a.getenv)
	if err != nil {
		return err
	}
	ackWait := fs.Duration("ack-wait", cmp.Or(envBus.AckWait, 30*time.Second), "how long the server waits for a heartbeat before redelivering a job; set the same on every worker of a queue")
	noDiag := fs.Bool("no-diagnostics", false, "do not register jetfleet-noop, jetfleet-sleep and jetfleet-fail")
	noCatalog := fs.Bool("no-catalog", false, "do not register the reference app's jobs (send-welcome-email, process-item-images), and open no database")
	metricsListen := fs.String("metrics-listen", "", "address to serve Prometheus /metrics on, e.g. :9464; off when empty")
	rest, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := noArgs(fs, rest); err != nil {
		return err
	}
	cfg := workers.Config{
		Queues: splitList(*queues), Concurrency: *concurrency, Tries: *tries, Timeout: *timeout,
		Grace: *grace, MaxJobs: *maxJobs, MaxTime: *maxTime, StopWhenEmpty: *stopWhenEmpty,
		Bus: bus.Config{AckWait: *ackWait}, Logger: a.log,
	}
	if *backoff != "" {
		if cfg.Backoff, err = wire.ParseBackoff(*backoff); err != nil {
			return fmt.Errorf("--backoff: %w", err)
		}
	}
	if *metricsListen != "" {
		if a.obs, err = newObservability(false); err != nil {
			return err
		}
		stop, err := a.obs.serveMetrics(a, *metricsListen)
		if err != nil {
			return err
		}
		defer stop()
	}
	nc, js, err := connectBus(ctx, a, a.dataDir, "jetfleet-work")
	if err != nil {
		return err
	}
	defer nc.Close()
	stopSamples := a.obs.instrumentWorkers(ctx, a, js, &cfg) // metrics and the dashboard's samples
	defer stopSamples()
	w := workers.New(js, cfg)
	if !*noDiag {
		workers.RegisterDiagnostics(w)
	}
	if !*noCatalog {
		stop, err := registerCatalogJobs(ctx, a, js, w)
		if err != nil {
			return err
		}
		defer stop()
	}
	return w.Run(ctx)
}

// registerCatalogJobs registers the reference app's jobs on w, with the
// database of the DB_* settings (SQLite in the data directory by default,
// migrated by `jetfleet up` or `jetfleet migrate`). stop closes the database.
func registerCatalogJobs(ctx context.Context, a *app, js jetstream.JetStream, w *workers.Worker) (stop func(), err error) {
	db, err := openCatalogDB(ctx, a, a.dataDir, false)
	if err != nil {
		return nil, err
	}
	cfg, err := catalogConfig(a)
	if err != nil {
		db.Close()
		return nil, err
	}
	cat, err := catalog.New(ctx, js, db, cfg)
	if err != nil {
		db.Close()
		return nil, err
	}
	cat.RegisterJobs(w)
	return func() { db.Close() }, nil
}
