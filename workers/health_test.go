package workers_test

import (
	"context"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/workers"
)

// TestLiveAndReadyFollowRun: a worker is alive but not ready while it
// starts, both once Run has provisioned its queues, and neither after Run
// has returned. (A stuck fetch loop is TestWorkerProbes of cmd/jetfleet,
// through a real process.)
func TestLiveAndReadyFollowRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	w := workers.New(e.js, workers.Config{Queues: []string{"high", "default:2"}})
	ctx := context.Background()
	if err := w.Ready(ctx); err == nil {
		t.Error("Ready before Run: nil")
	}
	if err := w.Live(); err != nil {
		t.Errorf("Live before Run: %v", err)
	}
	stop := start(t, w)
	waitFor(t, 10*time.Second, "Ready", func() bool { return w.Ready(ctx) == nil })
	if err := w.Live(); err != nil {
		t.Errorf("Live while running: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if w.Ready(ctx) == nil || w.Live() == nil {
		t.Errorf("after Run returned: Ready %v, Live %v", w.Ready(ctx), w.Live())
	}
}
