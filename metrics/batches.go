package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetfleet/jetfleet/bus"
)

// maxBatchSeries caps the batches whose progress BatchCollector exposes
// one by one, so that many batches cannot make many series.
const maxBatchSeries = 100

// BatchCollector is a prometheus.Collector of the batches JOBS holds, read
// with bus.Inspector.Batches and cached like QueueCollector:
// jetfleet_batches{state} counts them by state, and
// jetfleet_batch_jobs{batch,state} gives the progress (pending,
// succeeded, failed, skipped) of each batch that has not finished, the
// newest 100 of them. jetfleet_batch_stats_success is 0 when the read
// failed (and nothing else is exposed). Every node that registers one
// reports the same values: aggregate with max, not sum.
type BatchCollector struct {
	in  *bus.Inspector
	cfg QueueConfig

	mu   sync.Mutex
	at   time.Time
	last []bus.BatchStatus
	err  error

	batches, jobs, success *prometheus.Desc
}

// NewBatchCollector creates a BatchCollector reading through in and
// registers it on reg; cfg's CacheFor and Timeout apply.
func NewBatchCollector(reg prometheus.Registerer, in *bus.Inspector, cfg QueueConfig) (*BatchCollector, error) {
	if cfg.CacheFor <= 0 {
		cfg.CacheFor = 5 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	c := &BatchCollector{
		in: in, cfg: cfg,
		batches: prometheus.NewDesc("jetfleet_batches", "Batches (and chain steps) JOBS holds, by state: dispatching, running, cancelling, succeeded, failed, cancelled.", []string{"state"}, nil),
		jobs:    prometheus.NewDesc("jetfleet_batch_jobs", "Jobs of a batch that has not finished, by state: pending, succeeded, failed, skipped (the newest 100 such batches).", []string{"batch", "state"}, nil),
		success: prometheus.NewDesc("jetfleet_batch_stats_success", "1 when the last read of the batches from JetStream worked.", nil, nil),
	}
	if err := register(reg, c); err != nil {
		return nil, err
	}
	return c, nil
}

// Describe implements prometheus.Collector.
func (c *BatchCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.batches
	ch <- c.jobs
	ch <- c.success
}

// Collect implements prometheus.Collector.
func (c *BatchCollector) Collect(ch chan<- prometheus.Metric) {
	list, err := c.read()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.success, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.success, prometheus.GaugeValue, 1)
	byState := map[bus.BatchState]int{}
	for _, s := range []bus.BatchState{bus.BatchDispatching, bus.BatchRunning, bus.BatchCancelling, bus.BatchSucceeded, bus.BatchFailed, bus.BatchCancelled} {
		byState[s] = 0
	}
	series := 0
	for _, b := range list { // newest first
		byState[b.State]++
		if b.Done() || series == maxBatchSeries {
			continue
		}
		series++
		for state, n := range map[string]int{"pending": b.Pending, "succeeded": b.Succeeded, "failed": b.Failed, "skipped": b.Skipped} {
			ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(n), b.ID, state)
		}
	}
	for state, n := range byState {
		ch <- prometheus.MustNewConstMetric(c.batches, prometheus.GaugeValue, float64(n), string(state))
	}
}

// read returns the batches, read again once the cache is CacheFor old.
func (c *BatchCollector) read() ([]bus.BatchStatus, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) < c.cfg.CacheFor {
		return c.last, c.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	c.last, c.err = c.in.Batches(ctx)
	c.at = time.Now()
	return c.last, c.err
}
