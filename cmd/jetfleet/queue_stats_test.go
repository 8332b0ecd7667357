package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/workers"
)

func (f *fleet) ensureQueues(queues ...string) {
	f.t.Helper()
	if err := bus.EnsureQueues(context.Background(), f.js, bus.Config{}, queues...); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fleet) stats() bus.Stats {
	f.t.Helper()
	r := f.jf("queue", "stats", "--json")
	var st bus.Stats
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &st) != nil {
		f.t.Fatalf("queue stats --json: exit %d, %s%s", r.Code, r.Stdout, r.Stderr)
	}
	return st
}

func queueStats(st bus.Stats, queue string) bus.QueueStats {
	for _, q := range st.Queues {
		if q.Queue == queue {
			return q
		}
	}
	return bus.QueueStats{}
}

func TestQueueMonitorAlertsPublishesAndExits(t *testing.T) {
	f := newFleet(t)
	f.ensureQueues("high", "default")
	for range 3 {
		f.dispatch("high", workers.Noop{})
	}
	sub, err := f.js.Conn().SubscribeSync(bus.QueueBusySubject)
	if err != nil {
		t.Fatal(err)
	}

	r := f.jf("queue", "monitor", "high:2,default:10")
	if r.Code != exitAlert || !strings.Contains(r.Stderr, "1 queue in ALERT") {
		t.Fatalf("monitor over max: exit %d, stderr %s", r.Code, r.Stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 3 || strings.Fields(lines[0])[0] != "QUEUE" ||
		!strings.HasPrefix(lines[1], "high ") || !strings.HasSuffix(lines[1], "ALERT") ||
		!strings.HasPrefix(lines[2], "default ") || !strings.HasSuffix(lines[2], "OK") {
		t.Fatalf("monitor table:\n%s", r.Stdout)
	}
	t.Logf("jetfleet queue monitor high:2,default:10:\n%s", r.Stdout)
	m, err := sub.NextMsg(2 * time.Second)
	if err != nil {
		t.Fatalf("no event on %s: %v", bus.QueueBusySubject, err)
	}
	var ev map[string]any
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev["queue"] != "high" || ev["ready"] != 3.0 || ev["max"] != 2.0 || ev["oldest_ready"].(float64) <= 0 {
		t.Fatalf("event = %s", m.Data)
	}
	if extra, err := sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("an event for a queue that is OK: %s", extra.Data)
	}

	// --json: one line per check, the same exit status.
	r = f.jf("queue", "monitor", "high:2,default:10", "--json")
	var check struct {
		At     time.Time `json:"at"`
		Queues []struct {
			Queue       string  `json:"queue"`
			Ready       uint64  `json:"ready"`
			Max         uint64  `json:"max"`
			OldestReady float64 `json:"oldest_ready"`
			Status      string  `json:"status"`
		} `json:"queues"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &check); err != nil || r.Code != exitAlert || strings.Count(r.Stdout, "\n") != 1 {
		t.Fatalf("monitor --json: exit %d, %v:\n%s", r.Code, err, r.Stdout)
	}
	if q := check.Queues; len(q) != 2 || q[0].Queue != "high" || q[0].Ready != 3 || q[0].Max != 2 || q[0].OldestReady <= 0 || q[0].Status != "ALERT" ||
		q[1].Queue != "default" || q[1].Status != "OK" || time.Since(check.At) > time.Minute {
		t.Fatalf("monitor --json = %s", r.Stdout)
	}
	if m, err := sub.NextMsg(2 * time.Second); err != nil || !strings.Contains(string(m.Data), `"queue":"high"`) { // --json publishes as the table does
		t.Fatalf("the event of monitor --json: %v", err)
	}

	if r := f.jf("queue:monitor", "high:5,default"); r.Code != 0 || strings.Contains(r.Stdout, "ALERT") {
		t.Fatalf("monitor under max: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if _, err := sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatal("an event was published while every queue was OK")
	}
	if r := f.jf("queue", "monitor", "high:100", "--max-wait", "1ms"); r.Code != exitAlert {
		t.Fatalf("monitor over max wait: exit %d\n%s", r.Code, r.Stdout)
	}
	if r := f.jf("queue", "monitor", "default:abc"); r.Code != 2 || !strings.Contains(r.Stderr, `max "abc" is not a whole number`) || strings.Contains(r.Stderr, "invalid job") {
		t.Errorf("monitor with a bad threshold: exit %d, stderr %q; want 2 naming the threshold", r.Code, r.Stderr)
	}
	if r := f.jf("queue", "monitor", "low:1"); r.Code != 1 || !strings.Contains(r.Stderr, `unknown queue "low" (known queues: default, high)`) {
		t.Fatalf("unknown queue: exit %d, %s", r.Code, r.Stderr)
	}

	// --every keeps checking, publishing each round, and exits 0 on SIGTERM.
	p := startProc(t, f.dir, f.env, "queue", "monitor", "high:2", "--every", "200ms")
	eventually(t, 10*time.Second, "two rounds", func() error {
		if n := strings.Count(p.Stdout.String(), "QUEUE"); n < 2 {
			return fmt.Errorf("%d rounds", n)
		}
		return nil
	})
	if n, _, _ := sub.Pending(); n < 2 {
		t.Fatalf("monitor --every published %d events in two rounds", n)
	}
	// A check that fails (here its queue's consumer is gone) is reported,
	// and the monitor goes on checking.
	if err := f.js.DeleteConsumer(context.Background(), bus.JobsStream, bus.ConsumerName("high")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "two failed checks reported", func() error {
		if n := strings.Count(p.Stderr.String(), "check failed, checking again in 200ms"); n < 2 {
			return fmt.Errorf("%d failed checks reported; stderr %q", n, p.Stderr.String())
		}
		return nil
	})
	if code := p.Signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("monitor --every exited %d after SIGTERM", code)
	}
}

func TestQueuePauseStopsEveryWorkerUntilResume(t *testing.T) {
	f := newFleet(t)
	args := []string{"--queue", "high,default", "--concurrency", "2"}
	w1, w2 := f.startWorker(nil, args...), f.startWorker(nil, args...)
	if r := f.jf("queue", "pause", "nope"); r.Code != 1 || !strings.Contains(r.Stderr, `unknown queue "nope"`) {
		t.Fatalf("pause of an unknown queue: exit %d, %s", r.Code, r.Stderr)
	}
	if r := f.jf("queue", "pause", "high"); r.Code != 0 || !strings.HasPrefix(r.Stdout, "Queue high paused") {
		t.Fatalf("pause: exit %d, %q %s", r.Code, r.Stdout, r.Stderr)
	}
	w1.WaitFor(t, "queue paused", 5*time.Second)
	w2.WaitFor(t, "queue paused", 5*time.Second)

	var high []string
	for range 6 {
		high = append(high, f.dispatch("high", workers.Noop{}))
	}
	d1, d2 := f.dispatch("default", workers.Noop{}), f.dispatch("default", workers.Noop{})
	eventually(t, 10*time.Second, "the default jobs to run", func() error {
		if ran := f.successes(); len(ran[d1]) == 0 || len(ran[d2]) == 0 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	// The high jobs were stored before the default ones, and every fetch
	// asks high first: had a worker taken one, the server would count it
	// delivered (in flight or gone), not ready.
	if st := queueStats(f.stats(), "high"); !st.Paused || st.Ready != 6 || st.InFlight != 0 {
		t.Fatalf("stats of the paused queue: %+v, want paused with 6 ready and none in flight", st)
	}
	ran := f.successes()
	for _, id := range high {
		if len(ran[id]) > 0 {
			t.Fatalf("job %s of the paused queue ran", id)
		}
	}

	if r := f.jf("queue:resume", "high"); r.Code != 0 || r.Stdout != "Queue high resumed.\n" {
		t.Fatalf("resume: exit %d, %q %s", r.Code, r.Stdout, r.Stderr)
	}
	eventually(t, 10*time.Second, "the high jobs to drain", func() error {
		ran := f.successes()
		for _, id := range high {
			if len(ran[id]) != 1 {
				return fmt.Errorf("job %s ran %d times", id, len(ran[id]))
			}
		}
		return nil
	})
}

func TestQueueStatsCountsQueuesAndWorkers(t *testing.T) {
	f := newFleet(t)
	w := f.startWorker(nil, "--queue", "high,default")
	f.dispatch("high", workers.Noop{})
	f.dispatch("high", workers.Noop{})
	f.dispatch("default", workers.Fail{Permanent: true})
	f.dispatch("default", workers.Noop{}, bus.Delay(time.Hour))
	f.waitDLQ(1)

	var st bus.Stats
	// Workers write their record every 5 seconds.
	eventually(t, 20*time.Second, "the per-minute counts", func() error {
		st = f.stats()
		high, def := queueStats(st, "high"), queueStats(st, "default")
		if high.ProcessedLastMinute != 2 || def.FailedLastMinute != 1 {
			return fmt.Errorf("high %+v, default %+v", high, def)
		}
		return nil
	})
	def := queueStats(st, "default")
	if def.Delayed != 1 || def.Failed != 1 || def.Ready != 0 || def.Workers != 1 || st.FailedTotal != 1 {
		t.Errorf("default = %+v (failed total %d)", def, st.FailedTotal)
	}
	if len(st.Workers) != 1 || st.Workers[0].PID != w.Cmd.Process.Pid || st.Workers[0].Concurrency != 10 ||
		strings.Join(st.Workers[0].Queues, ",") != "high,default" {
		t.Fatalf("workers = %+v", st.Workers)
	}
	r := f.jf("queue:stats")
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "QUEUE ") || !strings.Contains(r.Stdout, strconv.Itoa(w.Cmd.Process.Pid)) {
		t.Fatalf("queue:stats: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	assertFits80(t, "queue stats", r.Stdout)
	t.Logf("jetfleet queue stats:\n%s", r.Stdout)

	if code := w.Signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("worker exited %d", code)
	}
	if st := f.stats(); len(st.Workers) != 0 {
		t.Fatalf("a stopped worker is still listed: %+v", st.Workers)
	}
}

// TestDispatchToANewQueueIsVisible: `jetfleet dispatch` to a queue no
// worker has served yet makes it a real queue: `queue stats` counts the
// job with its age and `queue monitor newqueue:2` knows the queue.
func TestDispatchToANewQueueIsVisible(t *testing.T) {
	f := newFleet(t)
	if r := f.jf("dispatch", "newqueue", "kind", "{}"); r.Code != 0 {
		t.Fatalf("dispatch: exit %d: %s", r.Code, r.Stderr)
	}
	// The server counts a stored job as ready a moment after it
	// acknowledges the store: the count may take a moment to show it.
	eventually(t, 5*time.Second, "queue stats to count the job", func() error {
		if q := queueStats(f.stats(), "newqueue"); q.Queue != "newqueue" || q.Ready != 1 || q.OldestReady <= 0 {
			return fmt.Errorf("newqueue = %+v, want 1 ready job with an age", q)
		}
		return nil
	})
	if r := f.jf("queue", "monitor", "newqueue:2"); r.Code != 0 || !strings.Contains(r.Stdout, "newqueue") {
		t.Fatalf("queue monitor newqueue:2: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}
