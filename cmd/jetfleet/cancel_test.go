package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/workers"
)

// logLines returns the JSON log lines of p about job id, by message.
func logLines(p *proc, id string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(p.Stderr.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Message string `json:"message"`
			JobID   string `json:"job_id"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.JobID == id {
			out = append(out, line.Message)
		}
	}
	return out
}

// gone checks that job id can never run again: JOBS holds no message of
// it (nor its schedule), the queue's consumer has nothing delivered and
// unacknowledged, and DLQ holds no dead letter of it.
func gone(t *testing.T, js jetstream.JetStream, queue, id string) error {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, bus.JobsStream)
	if err != nil {
		return err
	}
	for _, filter := range []string{"jobs.*.*." + bus.IDToken(id), "schedules.delay.*." + bus.IDToken(id)} {
		if _, err := s.GetLastMsgForSubject(ctx, filter); err == nil {
			return fmt.Errorf("JOBS still holds %s", filter)
		}
	}
	c, err := js.Consumer(ctx, bus.JobsStream, bus.ConsumerName(queue))
	if err != nil {
		return err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return err
	}
	if info.NumAckPending != 0 {
		return fmt.Errorf("queue %s has %d jobs delivered and unacknowledged", queue, info.NumAckPending)
	}
	dlq, err := js.Stream(ctx, bus.DLQStream)
	if err != nil {
		return err
	}
	if _, err := dlq.GetLastMsgForSubject(ctx, "dlq.*.*."+bus.IDToken(id)); err == nil {
		return fmt.Errorf("job %s was dead-lettered", id)
	}
	return nil
}

// TestCancelRunningJobAcrossCluster is the cancel of a running
// job: a three-node cluster, two worker processes each connected to its
// own node, a 30 s job running on one of them, and `jetfleet queue
// cancel` run against the third node. The job's context is cancelled and
// its worker records it as cancelled within a second of the command
// starting; it is not retried (nothing of it is left in JOBS, nothing
// delivered and unacknowledged) and not dead-lettered; both `queue job`
// and Inspector.Job say cancelled.
func TestCancelRunningJobAcrossCluster(t *testing.T) {
	t.Parallel()
	c := natstest.StartCluster(t, 3)
	ctx := context.Background()
	_, js := natstest.Connect(t, c.Nodes[0].ClientURL())
	cfg := bus.Config{Replicas: 3}
	if err := bus.ProvisionQueues(ctx, js, cfg, "default"); err != nil {
		t.Fatal(err)
	}
	d, _ := bus.NewDispatcher(js, cfg)
	in, _ := bus.NewInspector(js, cfg)
	dir := t.TempDir()
	var ws []*proc
	for i := range 2 {
		w := startProc(t, dir, testEnv("NATS_URL="+c.Nodes[i].ClientURL()), "work", "--queue", "default", "--ack-wait", "5s")
		w.WaitFor(t, "worker started", 30*time.Second)
		ws = append(ws, w)
	}
	id, err := d.Dispatch(ctx, workers.Sleep{MS: 30_000})
	if err != nil {
		t.Fatal(err)
	}
	var running *bus.JobStatus
	eventually(t, 30*time.Second, "the job running", func() error {
		st, err := in.Job(ctx, id)
		if err != nil {
			return err
		}
		if st.State != bus.JobRunning {
			return fmt.Errorf("state %s", st.State)
		}
		running = st
		return nil
	})
	holder := ws[0]
	if strings.HasSuffix(running.Worker, fmt.Sprintf(":%d", ws[1].Cmd.Process.Pid)) {
		holder = ws[1]
	}
	t.Logf("job %s runs on %s (pid %d)", id, running.Worker, holder.Cmd.Process.Pid)

	third := testEnv("NATS_URL=" + c.Nodes[2].ClientURL())
	began := time.Now()
	r := runJF(t, dir, third, "", "queue", "cancel", id)
	if r.Code != 0 || !strings.Contains(r.Stdout, "it was running on "+running.Worker) {
		t.Fatalf("queue cancel: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	var final *bus.JobStatus
	eventually(t, 10*time.Second, "the worker's cancelled record", func() error {
		st, err := in.Job(ctx, id)
		if err != nil {
			return err
		}
		if st.State != bus.JobCancelled || st.RunTime == 0 { // the worker's record has the run time
			return fmt.Errorf("state %s, run time %s", st.State, st.RunTime)
		}
		final = st
		return nil
	})
	stoppedAfter := final.FinishedAt.Sub(began)
	t.Logf("cancel command started; the job stopped %s later, after running %s", stoppedAfter.Round(time.Millisecond), final.RunTime.Round(time.Millisecond))
	if stoppedAfter > time.Second {
		t.Errorf("the job stopped %s after the cancel command started; want within 1s", stoppedAfter)
	}
	if final.RunTime >= 30*time.Second {
		t.Errorf("the job ran %s: it was not stopped", final.RunTime)
	}
	eventually(t, 10*time.Second, "nothing of the job left to run", func() error { return gone(t, js, "default", id) })
	r = runJF(t, dir, third, "", "queue", "job", id)
	if r.Code != 0 || !strings.Contains(r.Stdout, "cancelled at") {
		t.Fatalf("queue job after the cancel: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	for _, w := range ws {
		for _, m := range logLines(w, id) {
			if m == "job succeeded" || strings.Contains(m, "retry") || strings.Contains(m, "dead-lettered") {
				t.Errorf("worker pid %d logged %q for the cancelled job", w.Cmd.Process.Pid, m)
			}
		}
	}
	if got := logLines(holder, id); !contains(got, "job cancelled") {
		t.Errorf("the worker running it logged %v, want \"job cancelled\"", got)
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// TestCancelDelayedJobNeverRuns: a delayed job cancelled before its time
// is removed from the scheduler; past its time it has not run and still
// says cancelled.
func TestCancelDelayedJobNeverRuns(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	w := f.startWorker(nil, "--queue", "default")
	due := time.Now().Add(3 * time.Second)
	id := f.dispatch("default", workers.Noop{}, bus.At(due))
	if r := f.jf("queue", "cancel", id); r.Code != 0 || !strings.Contains(r.Stdout, "it was delayed") {
		t.Fatalf("queue cancel: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if err := gone(t, f.js, "default", id); err != nil {
		t.Fatal(err)
	}
	// Its time passes: had the schedule survived, the worker would run it now.
	time.Sleep(time.Until(due.Add(2 * time.Second)))
	control := f.dispatch("default", workers.Noop{})
	eventually(t, 10*time.Second, "a job dispatched after it running", func() error {
		if f.successes()[control] == nil {
			return fmt.Errorf("job %s has not run", control)
		}
		return nil
	})
	if got := logLines(w, id); len(got) > 0 {
		t.Fatalf("the cancelled delayed job ran: %v", got)
	}
	st, msg, ok := f.queueJob(id)
	if !ok || st.State != bus.JobCancelled {
		t.Fatalf("queue job: %+v %s", st, msg)
	}
}

// TestCancelQueuedJobUnderLoad: with two worker processes busy on 10,000
// jobs, a job queued behind them is cancelled; it never runs, and every
// one of the 10,000 others succeeds exactly once.
func TestCancelQueuedJobUnderLoad(t *testing.T) {
	t.Parallel()
	const n = 10_000
	f := newFleet(t)
	for range 2 {
		f.startWorker(nil, "--queue", "default", "--concurrency", "4")
	}
	ctx := context.Background()
	batch := make([]bus.DispatchManyParams, n)
	for i := range batch {
		batch[i] = bus.DispatchManyParams{Args: workers.Sleep{MS: 3}} // 10,000 × 3 ms over 8 slots: several seconds
	}
	ids, err := f.d.DispatchMany(ctx, batch...)
	if err != nil {
		t.Fatal(err)
	}
	target := f.dispatch("default", workers.Noop{}) // behind the 10,000
	r := f.jf("queue", "cancel", target)
	if r.Code != 0 || !strings.Contains(r.Stdout, "waiting for a worker") {
		t.Fatalf("queue cancel: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if done := len(f.successes()); done >= n {
		t.Fatalf("all %d jobs had run before the cancel: no load", done)
	}
	eventually(t, 120*time.Second, "the 10,000 jobs run", func() error {
		if got := len(f.successes()); got < n {
			return fmt.Errorf("%d of %d succeeded", got, n)
		}
		return nil
	})
	runs := f.successes()
	for _, id := range ids {
		if len(runs[id]) != 1 {
			t.Fatalf("job %s ran %d times, want once", id, len(runs[id]))
		}
	}
	if err := gone(t, f.js, "default", target); err != nil {
		t.Fatal(err)
	}
	for _, w := range f.all {
		if got := logLines(w, target); len(got) > 0 {
			t.Fatalf("the cancelled job ran: %v", got)
		}
	}
	if st, msg, ok := f.queueJob(target); !ok || st.State != bus.JobCancelled {
		t.Fatalf("queue job: %+v %s", st, msg)
	}
}

// The job status recipes of the operations guide for the stock nats CLI,
// each run as written: a finished job's record, a running job's answer
// from its worker, a waiting job in JOBS, a tag's jobs, and a cancel
// published from the shell stopping a running job.
func TestJobStatusNatsCLIRecipes(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	var url string
	for _, kv := range f.env {
		if u, ok := strings.CutPrefix(kv, "NATS_URL="); ok {
			url = u
		}
	}
	n := newNatsCLI(t, url)
	w := f.startWorker(nil, "--queue", "default")
	done := f.dispatch("default", workers.Sleep{MS: 10}, bus.JobID("order-42"), bus.Tags("user:7"))
	eventually(t, 10*time.Second, "order-42 succeeded", func() error {
		if f.successes()[done] == nil {
			return errString("not yet")
		}
		return nil
	})
	mustContain(t, "nats stream get JETFLEET_HISTORY --last-for", n.run("stream", "get", bus.HistoryStream, "--last-for", "jetfleet.status.*.*.order-42"),
		"jetfleet.status.default.jetfleet-sleep.order-42", `"state":"succeeded"`, `"result":{"slept_ms":10}`)
	mustContain(t, "nats stream subjects JETFLEET_HISTORY 'jetfleet.tags.user:7.*'", n.run("stream", "subjects", bus.HistoryStream, "jetfleet.tags.user:7.*"),
		"jetfleet.tags.user:7.order-42")

	running := f.dispatch("default", workers.Sleep{MS: 30_000}, bus.JobID("resize-7"))
	eventually(t, 10*time.Second, "resize-7 running", func() error {
		if st, _, ok := f.queueJob(running); !ok || st.State != bus.JobRunning {
			return errString("not yet")
		}
		return nil
	})
	mustContain(t, "nats req jetfleet.jobs.locate.resize-7", n.run("req", "jetfleet.jobs.locate.resize-7", ""),
		`"id":"resize-7"`, `"state":"running"`, fmt.Sprintf(":%d", w.Cmd.Process.Pid))
	mustContain(t, "nats pub jetfleet.jobs.cancel.resize-7", n.run("pub", "jetfleet.jobs.cancel.resize-7", ""), `Published 0 bytes to "jetfleet.jobs.cancel.resize-7"`)
	eventually(t, 10*time.Second, "resize-7 cancelled", func() error {
		if st, _, ok := f.queueJob(running); !ok || st.State != bus.JobCancelled {
			return errString("not yet")
		}
		return nil
	})

	f.ensureQueues("low") // a queue no worker serves
	waiting := f.dispatch("low", workers.Noop{}, bus.JobID("wait-1"))
	mustContain(t, "nats stream get JOBS --last-for", n.run("stream", "get", bus.JobsStream, "--last-for", "jobs.*.*."+waiting),
		"on Subject jobs.low.jetfleet-noop.wait-1")
}
