package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/metrics"
	"github.com/jetfleet/jetfleet/workers"
)

// TestQueueGaugesMatchTheInspector: with jobs ready on one queue, one
// paused queue and a dead letter, the scraped gauges equal
// Inspector.Stats; a second scrape within CacheFor serves the cached read,
// so jobs dispatched in between do not show until it expires.
func TestQueueGaugesMatchTheInspector(t *testing.T) {
	e := newEnv(t, "high", "default")
	ctx := context.Background()
	in, err := bus.NewInspector(e.js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	coll, err := metrics.NewQueueCollector(e.reg, in, metrics.QueueConfig{CacheFor: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	_ = coll
	d, _ := bus.NewDispatcher(e.js, bus.Config{})
	for range 3 {
		if _, err := d.Dispatch(ctx, workers.Noop{}, bus.OnQueue("high")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Dispatch(ctx, workers.Noop{}, bus.Delay(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := in.Pause(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.Publish(ctx, "dlq.default.jetfleet-noop.gone", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	// The consumer's pending count follows the stored jobs a moment later:
	// wait until the inspector sees them, so both reads see one state.
	var st *bus.Stats
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, err = in.Stats(ctx); err != nil {
			t.Fatal(err)
		}
		if len(st.Queues) == 2 && st.Queues[1].Queue == "high" && st.Queues[1].Ready == 3 && st.Queues[0].Delayed == 1 && st.Queues[0].Paused && st.FailedTotal == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the inspector's stats never showed the jobs: %+v", st.Queues)
		}
		time.Sleep(10 * time.Millisecond)
	}
	f := e.scrape(t)
	if got := f.Sum("jetfleet_queue_stats_success"); got != 1 {
		t.Fatalf("jetfleet_queue_stats_success = %v", got)
	}
	for _, q := range st.Queues {
		for name, want := range map[string]float64{
			"jetfleet_queue_ready_jobs":     float64(q.Ready),
			"jetfleet_queue_in_flight_jobs": float64(q.InFlight),
			"jetfleet_queue_scheduled_jobs": float64(q.Delayed),
			"jetfleet_queue_failed_jobs":    float64(q.Failed),
			"jetfleet_queue_paused":         boolFloat(q.Paused),
			"jetfleet_queue_workers":        float64(q.Workers),
		} {
			if got := f.Sum(name, "queue", q.Queue); got != want {
				t.Errorf("%s{queue=%q} = %v, want %v", name, q.Queue, got, want)
			}
		}
	}
	if got := f.Sum("jetfleet_queue_ready_jobs", "queue", "high"); got != 3 {
		t.Errorf("ready on high = %v, want 3", got)
	}
	if got := f.Sum("jetfleet_queue_scheduled_jobs", "queue", "default"); got != 1 {
		t.Errorf("scheduled on default = %v, want 1", got)
	}
	if got := f.Sum("jetfleet_queue_oldest_ready_age_seconds", "queue", "high"); got < 0 {
		t.Errorf("oldest ready age on high = %v", got)
	}
	if got := f.Sum("jetfleet_failed_bytes"); got == 0 || got != float64(st.FailedBytes) || f.Sum("jetfleet_failed_max_bytes") != 256<<20 {
		t.Errorf("DLQ gauges: bytes %v, max bytes %v; want %d (one letter) and 256 MiB", got, f.Sum("jetfleet_failed_max_bytes"), st.FailedBytes)
	}
	h, err := in.History(ctx)
	if err != nil || h == nil {
		t.Fatalf("History = %+v, %v", h, err)
	}
	if got := f.Sum("jetfleet_history_max_bytes"); got != 256<<20 || f.Sum("jetfleet_history_messages") != float64(h.Messages) {
		t.Errorf("history gauges: max bytes %v, messages %v; want 256 MiB and %d", got, f.Sum("jetfleet_history_messages"), h.Messages)
	}

	if _, err := d.Dispatch(ctx, workers.Noop{}, bus.OnQueue("high")); err != nil {
		t.Fatal(err)
	}
	if got := e.scrape(t).Sum("jetfleet_queue_ready_jobs", "queue", "high"); got != 3 {
		t.Errorf("a scrape within CacheFor read the stats again: ready on high = %v, want the cached 3", got)
	}
}

// TestQueueGaugesWithoutJetStream: when the stats cannot be read, only
// jetfleet_queue_stats_success = 0 is exposed, never stale values.
func TestQueueGaugesWithoutJetStream(t *testing.T) {
	e := newEnv(t, "default")
	if err := e.js.DeleteStream(context.Background(), bus.JobsStream); err != nil {
		t.Fatal(err)
	}
	in, _ := bus.NewInspector(e.js, bus.Config{})
	if _, err := metrics.NewQueueCollector(e.reg, in, metrics.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	f := e.scrape(t)
	if got := f.Sum("jetfleet_queue_stats_success"); got != 0 {
		t.Errorf("jetfleet_queue_stats_success = %v, want 0", got)
	}
	if f["jetfleet_queue_ready_jobs"] != nil {
		t.Errorf("ready gauges exposed without stats")
	}
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// blocker is a job whose handler waits until its test lets it go.
type blocker struct{}

func (blocker) Kind() string { return "blocker" }

// TestQueueGaugesCountJobsWaitingForALimit: jobs a worker holds for a
// fleet-wide limit show in jetfleet_queue_waiting_jobs{queue,kind}.
func TestQueueGaugesCountJobsWaitingForALimit(t *testing.T) {
	e := newEnv(t, "default")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	in, _ := bus.NewInspector(e.js, bus.Config{})
	if _, err := metrics.NewQueueCollector(e.reg, in, metrics.QueueConfig{CacheFor: time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	w := workers.New(e.js, workers.Config{PresenceInterval: 100 * time.Millisecond, Grace: time.Second})
	workers.Register(w, func(ctx context.Context, _ *workers.Job[blocker]) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}, workers.MaxConcurrent(1))
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { close(release); cancel(); <-done }()
	d, _ := bus.NewDispatcher(e.js, bus.Config{})
	for range 3 {
		if _, err := d.Dispatch(ctx, blocker{}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := e.scrape(t).Sum("jetfleet_queue_waiting_jobs", "queue", "default", "kind", "blocker")
		if got == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jetfleet_queue_waiting_jobs{default,blocker} = %v, want 2 (one job runs under MaxConcurrent(1))", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
