package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetfleet/jetfleet/bus"
)

// QueueConfig configures a QueueCollector. The zero value is ready to use.
type QueueConfig struct {
	// CacheFor is how long one read of the queue stats serves scrapes, so
	// that many scrapers (or a short scrape interval) cost one read.
	// Default 5s.
	CacheFor time.Duration
	// Timeout bounds one read of the queue stats. Default 5s.
	Timeout time.Duration
	// DueWithin is the horizon of jetfleet_queue_delayed_due_soon_jobs:
	// delayed jobs whose time comes within it. Default 1 minute.
	DueWithin time.Duration
}

// QueueCollector is a prometheus.Collector of per-queue gauges read from
// JetStream with bus.Inspector.Stats: ready, in flight, scheduled (delayed),
// failed (in DLQ), the oldest ready job's age, paused, and live workers per
// queue, jobs waiting for a fleet-wide limit per queue and kind (a kind
// with none waiting has no series), plus the number of live workers, the
// delayed jobs that come due within DueWithin (duesoon.go), the size of
// DLQ and its limit (jetfleet_failed_bytes, _max_bytes), and the size
// of the job history (jetfleet_history_bytes, _messages, _max_bytes;
// absent when the history is off). A read is a handful of requests per
// queue and is cached for CacheFor. When the read fails, only
// jetfleet_queue_stats_success (0) is exposed: no stale values.
//
// Every node that registers one reports the same fleet-wide values, so
// aggregate with max by (queue), not sum.
type QueueCollector struct {
	in  *bus.Inspector
	cfg QueueConfig

	mu      sync.Mutex
	at      time.Time
	last    *bus.Stats
	dueSoon map[string]int
	history *bus.HistoryStats
	err     error
	index   dueIndex

	ready, inFlight, scheduled, failed, oldest, paused, workers *prometheus.Desc
	fleet, success, due                                         *prometheus.Desc
	historyBytes, historyMessages, historyMaxBytes              *prometheus.Desc
	failedBytes, failedMaxBytes                                 *prometheus.Desc
	waiting                                                     *prometheus.Desc
}

// NewQueueCollector creates a QueueCollector reading through in and
// registers it on reg.
func NewQueueCollector(reg prometheus.Registerer, in *bus.Inspector, cfg QueueConfig) (*QueueCollector, error) {
	if cfg.CacheFor <= 0 {
		cfg.CacheFor = 5 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.DueWithin <= 0 {
		cfg.DueWithin = time.Minute
	}
	q := []string{"queue"}
	desc := func(name, help string, labels []string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	c := &QueueCollector{
		in: in, cfg: cfg,
		ready:     desc("jetfleet_queue_ready_jobs", "Jobs ready for a worker.", q),
		inFlight:  desc("jetfleet_queue_in_flight_jobs", "Jobs delivered and not yet acknowledged (running or waiting out a retry's backoff).", q),
		scheduled: desc("jetfleet_queue_scheduled_jobs", "Delayed jobs waiting for their time.", q),
		failed:    desc("jetfleet_queue_failed_jobs", "Dead letters of the queue in DLQ.", q),
		oldest:    desc("jetfleet_queue_oldest_ready_age_seconds", "How long the oldest ready job has waited; 0 when none is ready.", q),
		paused:    desc("jetfleet_queue_paused", "1 while the queue is paused.", q),
		workers:   desc("jetfleet_queue_workers", "Live worker processes taking jobs from the queue.", q),
		fleet:     desc("jetfleet_workers", "Live worker processes (records in jetfleet_workers).", nil),
		waiting:   desc("jetfleet_queue_waiting_jobs", "Jobs the live workers hold that wait for a slot of a concurrency cap or a token of a rate limit.", []string{"queue", "kind"}),
		success:   desc("jetfleet_queue_stats_success", "1 when the last read of the queue stats from JetStream worked.", nil),
		due:       desc("jetfleet_queue_delayed_due_soon_jobs", "Delayed jobs whose time comes within the next minute (QueueConfig.DueWithin).", q),

		historyBytes:    desc("jetfleet_history_bytes", "Bytes the job history (stream JETFLEET_HISTORY) takes.", nil),
		historyMessages: desc("jetfleet_history_messages", "Job records and tag index entries in the job history.", nil),
		historyMaxBytes: desc("jetfleet_history_max_bytes", "The job history's size limit (its MaxBytes).", nil),
		failedBytes:     desc("jetfleet_failed_bytes", "Bytes the dead letters (stream DLQ) take.", nil),
		failedMaxBytes:  desc("jetfleet_failed_max_bytes", "DLQ's size limit (its MaxBytes; -1: none). When it is reached, new dead letters are refused and their jobs stay queued.", nil),
	}
	if err := register(reg, c); err != nil {
		return nil, err
	}
	return c, nil
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.ready, c.inFlight, c.scheduled, c.failed, c.oldest, c.paused, c.workers, c.fleet, c.success, c.due, c.historyBytes, c.historyMessages, c.historyMaxBytes, c.failedBytes, c.failedMaxBytes, c.waiting} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	st, due, hist, err := c.stats()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.success, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.success, prometheus.GaugeValue, 1)
	if hist != nil {
		ch <- prometheus.MustNewConstMetric(c.historyBytes, prometheus.GaugeValue, float64(hist.Bytes))
		ch <- prometheus.MustNewConstMetric(c.historyMessages, prometheus.GaugeValue, float64(hist.Messages))
		ch <- prometheus.MustNewConstMetric(c.historyMaxBytes, prometheus.GaugeValue, float64(hist.MaxBytes))
	}
	ch <- prometheus.MustNewConstMetric(c.fleet, prometheus.GaugeValue, float64(len(st.Workers)))
	ch <- prometheus.MustNewConstMetric(c.failedBytes, prometheus.GaugeValue, float64(st.FailedBytes))
	ch <- prometheus.MustNewConstMetric(c.failedMaxBytes, prometheus.GaugeValue, float64(st.FailedMaxBytes))
	gauge := func(d *prometheus.Desc, v float64, queue string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, queue)
	}
	for _, q := range st.Queues {
		gauge(c.ready, float64(q.Ready), q.Queue)
		gauge(c.inFlight, float64(q.InFlight), q.Queue)
		gauge(c.scheduled, float64(q.Delayed), q.Queue)
		gauge(c.failed, float64(q.Failed), q.Queue)
		gauge(c.oldest, q.OldestReady.Seconds(), q.Queue)
		gauge(c.paused, boolFloat(q.Paused), q.Queue)
		gauge(c.workers, float64(q.Workers), q.Queue)
		gauge(c.due, float64(due[q.Queue]), q.Queue)
		for kind, n := range q.WaitingKinds {
			ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(n), q.Queue, kind)
		}
	}
}

// stats returns the cached stats, reading them again once CacheFor has
// passed. Concurrent scrapes wait for one read.
func (c *QueueCollector) stats() (*bus.Stats, map[string]int, *bus.HistoryStats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < c.cfg.CacheFor {
		return c.last, c.dueSoon, c.history, c.err
	}
	// Collect has no context: the read is bounded by Timeout instead.
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	c.last, c.err = c.in.Stats(ctx)
	if c.err == nil {
		c.dueSoon, c.err = c.index.refresh(ctx, c.in, time.Now(), c.cfg.DueWithin)
	}
	if c.err == nil {
		c.history, c.err = c.in.History(ctx)
	}
	c.at = time.Now()
	return c.last, c.dueSoon, c.history, c.err
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
