package workers_test

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/workers"
)

// logBuffer is a zerolog sink the test can read while the worker writes.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

func TestPausedQueueIsSkippedUntilResumed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, bus.Config{})
	in, err := bus.NewInspector(e.js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	log := zerolog.New(logs)
	rec := &recorder{}
	w := workers.New(e.js, workers.Config{Queues: []string{"high", "default"}, Concurrency: 2, Logger: log})
	workers.Register(w, func(ctx context.Context, j *workers.Job[record]) error {
		rec.add(j.Job, j.Args.N)
		return nil
	})
	start(t, w)
	waitFor(t, 10*time.Second, "the worker to start", func() bool { return logs.count("worker started") == 1 })

	paused := time.Now()
	if err := in.Pause(ctx, "high"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the worker to see the pause", func() bool { return logs.count("queue paused") == 1 })
	t.Logf("the worker saw the pause %s after it was asked", time.Since(paused).Round(time.Millisecond))
	for i := range 3 {
		dispatch(t, e, record{Queue: "high", N: i}, bus.OnQueue("high"))
		dispatch(t, e, record{Queue: "default", N: i}, bus.OnQueue("default"))
	}
	waitFor(t, 10*time.Second, "the default jobs", func() bool { return len(rec.snapshot()) == 3 })
	// A later sentinel on default: the fetch round that took it asked the
	// paused high queue first (strict order) and, with all high jobs ready
	// by then, would have taken them.
	dispatch(t, e, record{Queue: "default", N: 99}, bus.OnQueue("default"))
	waitFor(t, 10*time.Second, "the sentinel job", func() bool { return len(rec.snapshot()) == 4 })
	for _, r := range rec.snapshot() {
		if r.queue != "default" {
			t.Fatalf("a job of the paused queue ran: %+v", r)
		}
	}
	if info := consumerInfo(t, e.js, "high"); info.Delivered.Consumer != 0 || info.NumPending != 3 {
		t.Fatalf("the paused queue's consumer delivered %d jobs and holds %d, want 0 and 3", info.Delivered.Consumer, info.NumPending)
	}

	if err := in.Resume(ctx, "high"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the high jobs after resume", func() bool { return len(rec.snapshot()) == 7 })
	if logs.count("queue resumed") != 1 {
		t.Fatalf("resume not logged once:\n%s", logs.buf.String())
	}
}

func TestWorkerStartedWhilePausedTakesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, bus.Config{})
	if err := bus.EnsureQueues(ctx, e.js, bus.Config{}, "default"); err != nil {
		t.Fatal(err)
	}
	in, _ := bus.NewInspector(e.js, bus.Config{})
	if err := in.Pause(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	dispatch(t, e, record{Queue: "default", N: 1})
	rec := &recorder{}
	w := workers.New(e.js, workers.Config{Queues: []string{"default", "low"}})
	workers.Register(w, func(ctx context.Context, j *workers.Job[record]) error {
		rec.add(j.Job, j.Args.N)
		return nil
	})
	start(t, w)
	// A sentinel on the lower queue: the fetch round that took it asked the
	// paused default queue first (strict order), where a job was ready.
	dispatch(t, e, record{Queue: "low", N: 2}, bus.OnQueue("low"))
	waitFor(t, 10*time.Second, "the sentinel job", func() bool {
		return slices.ContainsFunc(rec.snapshot(), func(r run) bool { return r.queue == "low" })
	})
	if runs := rec.snapshot(); len(runs) != 1 {
		t.Fatalf("a job ran from a queue paused before the worker started: %+v", runs)
	}
	if info := consumerInfo(t, e.js, "default"); info.Delivered.Consumer != 0 || info.NumPending != 1 {
		t.Fatalf("the paused queue's consumer delivered %d jobs and holds %d, want 0 and 1", info.Delivered.Consumer, info.NumPending)
	}
	if err := in.Resume(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the job after resume", func() bool { return len(rec.snapshot()) == 2 })
}

func TestPresenceRecordCountsJobsAndGoesAway(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, bus.Config{})
	in, _ := bus.NewInspector(e.js, bus.Config{})
	w := workers.New(e.js, workers.Config{Queues: []string{"high", "default"}, Concurrency: 3, PresenceInterval: 100 * time.Millisecond})
	workers.RegisterDiagnostics(w)
	stop := start(t, w)
	dispatch(t, e, workers.Noop{}, bus.OnQueue("high"))
	dispatch(t, e, workers.Noop{}, bus.OnQueue("high"))
	dispatch(t, e, workers.Fail{Permanent: true}, bus.OnQueue("default"))

	var st *bus.Stats
	waitFor(t, 10*time.Second, "the counts in queue stats", func() bool {
		var err error
		if st, err = in.Stats(ctx); err != nil {
			t.Fatal(err)
		}
		return len(st.Queues) == 2 && st.Queues[1].ProcessedLastMinute == 2 && st.Queues[0].FailedLastMinute == 1
	})
	if len(st.Workers) != 1 {
		t.Fatalf("workers = %+v", st.Workers)
	}
	rec := st.Workers[0]
	host, _ := os.Hostname()
	if rec.PID != os.Getpid() || rec.Host != host || rec.Concurrency != 3 || strings.Join(rec.Queues, ",") != "high,default" ||
		rec.Counts["high"].Processed != 2 || rec.Counts["default"].Failed != 1 || time.Since(rec.HeartbeatAt) > 10*time.Second {
		t.Fatalf("record = %+v", rec)
	}
	if st.Queues[0].Workers != 1 || st.Queues[1].Workers != 1 {
		t.Fatalf("workers per queue: %+v", st.Queues)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if ws, err := in.Workers(ctx); err != nil || len(ws) != 0 {
		t.Fatalf("after a clean stop the record is still there: %+v, %v", ws, err)
	}
}
