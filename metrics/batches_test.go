package metrics_test

import (
	"context"
	"testing"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/promtest"
	"github.com/jetfleet/jetfleet/metrics"
	"github.com/jetfleet/jetfleet/workers"
)

// TestBatchGauges: a batch waiting on a paused queue shows its progress in
// jetfleet_batch_jobs; once it has run, only its state is counted.
func TestBatchGauges(t *testing.T) {
	e := newEnv(t, "default")
	ctx := context.Background()
	in, err := bus.NewInspector(e.js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := metrics.NewBatchCollector(e.reg, in, metrics.QueueConfig{CacheFor: 1}); err != nil {
		t.Fatal(err)
	}
	if err := in.Pause(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	d, _ := bus.NewDispatcher(e.js, bus.Config{})
	jobs := []bus.DispatchManyParams{{Args: workers.Noop{}}, {Args: workers.Noop{}}, {Args: workers.Fail{Permanent: true}}}
	b, err := d.Batch(ctx, jobs)
	if err != nil {
		t.Fatal(err)
	}
	f := e.scrape(t)
	if f.Sum("jetfleet_batch_stats_success") != 1 || f.Sum("jetfleet_batches", "state", "running") != 1 ||
		f.Sum("jetfleet_batch_jobs", "batch", b.ID, "state", "pending") != 3 {
		t.Fatalf("while paused: success %v, running %v, pending %v", f.Sum("jetfleet_batch_stats_success"),
			f.Sum("jetfleet_batches", "state", "running"), f.Sum("jetfleet_batch_jobs", "batch", b.ID, "state", "pending"))
	}
	w := workers.New(e.js, workers.Config{Queues: []string{"default"}, Tries: 1})
	workers.RegisterDiagnostics(w)
	run(t, w)
	if err := in.Resume(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	f = e.waitFor(t, "the batch counted failed", func(f promtest.Families) bool { return f.Sum("jetfleet_batches", "state", "failed") == 1 })
	if f.Sum("jetfleet_batch_jobs", "batch", b.ID) != 0 || f.Sum("jetfleet_batches", "state", "running") != 0 {
		t.Fatalf("a finished batch still has progress series")
	}
}
