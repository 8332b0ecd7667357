package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/metrics"
	"github.com/jetfleet/jetfleet/workers"
)

// TestDueSoonCountsDelayedJobsOfTheNextMinute: of the delayed jobs, those
// whose time comes within DueWithin are counted per queue, the later ones
// not; a job delayed after the first scrape is counted by the next read.
func TestDueSoonCountsDelayedJobsOfTheNextMinute(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "high", "default")
	ctx := context.Background()
	in, err := bus.NewInspector(e.js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := metrics.NewQueueCollector(e.reg, in, metrics.QueueConfig{CacheFor: time.Nanosecond}); err != nil {
		t.Fatal(err)
	}
	d, _ := bus.NewDispatcher(e.js, bus.Config{})
	delay := func(queue string, after time.Duration) {
		t.Helper()
		if _, err := d.Dispatch(ctx, workers.Noop{}, bus.OnQueue(queue), bus.Delay(after)); err != nil {
			t.Fatal(err)
		}
	}
	delay("default", 40*time.Second)
	delay("default", 50*time.Second)
	delay("default", 5*time.Minute)
	delay("high", 45*time.Second)
	delay("high", time.Hour)
	f := e.scrape(t)
	for queue, want := range map[string]float64{"default": 2, "high": 1} {
		if got := f.Sum("jetfleet_queue_delayed_due_soon_jobs", "queue", queue); got != want {
			t.Errorf("due soon on %s = %v, want %v", queue, got, want)
		}
	}
	delay("high", 30*time.Second)
	if got := e.scrape(t).Sum("jetfleet_queue_delayed_due_soon_jobs", "queue", "high"); got != 2 {
		t.Errorf("due soon on high after one more = %v, want 2", got)
	}
}
