package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/workers"
)

// jf runs a short jetfleet command against the fleet's server.
func (f *fleet) jf(args ...string) result {
	f.t.Helper()
	return runJF(f.t, f.dir, f.env, "", args...)
}

// dispatch enqueues one job on queue and returns its ID.
func (f *fleet) dispatch(queue string, args bus.Args, opts ...bus.Option) string {
	f.t.Helper()
	id, err := f.d.Dispatch(context.Background(), args, append(opts, bus.OnQueue(queue))...)
	if err != nil {
		f.t.Fatal(err)
	}
	return id
}

// dispatchJSON enqueues a job of any kind, handled or not.
func (f *fleet) dispatchJSON(queue, kind, body string) string {
	f.t.Helper()
	id, err := f.d.DispatchJSON(context.Background(), kind, []byte(body), bus.OnQueue(queue))
	if err != nil {
		f.t.Fatal(err)
	}
	return id
}

func (f *fleet) streamMsgs(name string) uint64 {
	f.t.Helper()
	s, err := f.js.Stream(context.Background(), name)
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return info.State.Msgs
}

// waitDLQ waits until DLQ holds n dead letters.
func (f *fleet) waitDLQ(n uint64) {
	f.t.Helper()
	eventually(f.t, 20*time.Second, fmt.Sprintf("%d dead letters", n), func() error {
		if got := f.streamMsgs(bus.DLQStream); got != n {
			return fmt.Errorf("DLQ holds %d", got)
		}
		return nil
	})
}

// successes maps each job ID the workers logged as succeeded to the
// attempt numbers of its successful runs.
func (f *fleet) successes() map[string][]int {
	out := map[string][]int{}
	for _, p := range f.all {
		sc := bufio.NewScanner(strings.NewReader(p.Stderr.String()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line struct {
				Message string `json:"message"`
				JobID   string `json:"job_id"`
				Attempt int    `json:"attempt"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Message == "job succeeded" {
				out[line.JobID] = append(out[line.JobID], line.Attempt)
			}
		}
	}
	return out
}

// storeDeadLetter dead-letters a job the way a worker does, without
// running one: seq stands for the job's place in JOBS.
func (f *fleet) storeDeadLetter(id, queue, kind, reason string, seq uint64) {
	f.t.Helper()
	job := &bus.Job{ID: id, Queue: queue, Kind: kind, Body: []byte(`{}`), Header: nats.Header{}, Seq: seq}
	if err := bus.DeadLetter(context.Background(), f.js, job, bus.Failure{Reason: reason, Attempts: 3}); err != nil {
		f.t.Fatal(err)
	}
}

func failedJSON(t *testing.T, r result) []failedView {
	t.Helper()
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Stderr)
	}
	var out []failedView
	if err := json.Unmarshal([]byte(r.Stdout), &out); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, r.Stdout)
	}
	return out
}

func viewIDs(vs []failedView) string {
	var ids []string
	for _, v := range vs {
		ids = append(ids, v.ID)
	}
	return strings.Join(ids, ",")
}

func compactJSON(b []byte) string {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return string(b)
	}
	return out.String()
}

func assertFits80(t *testing.T, what, out string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(line); n > 80 {
			t.Errorf("%s: line of %d columns:\n%s", what, n, line)
		}
	}
}

func TestQueueFailedAndShowListWhatWasDeadLettered(t *testing.T) {
	f := newFleet(t)
	f.startWorker(nil, "--queue", "high,default", "--concurrency", "1", "--tries", "1")
	a := f.dispatch("high", workers.Fail{Message: "smtp: connection refused\nsecond line of the reason"})
	f.waitDLQ(1)
	b := f.dispatchJSON("default", "resize-image", `{"item_id":7}`) // no handler: dead-lettered unrun
	f.waitDLQ(2)
	c := f.dispatch("default", workers.Fail{})
	f.waitDLQ(3)
	d := f.dispatchJSON("high", "resize-image", `{"item_id":8}`)
	f.waitDLQ(4)

	all := failedJSON(t, f.jf("queue", "failed", "--json"))
	if got, want := viewIDs(all), strings.Join([]string{d, c, b, a}, ","); got != want {
		t.Fatalf("failed --json lists %s, want newest first %s", got, want)
	}
	last := all[3]
	if last.Queue != "high" || last.Kind != "jetfleet-fail" || last.Attempts != 1 || last.Error != "smtp: connection refused\nsecond line of the reason" ||
		last.Headers[bus.HeaderJobID] != a || !strings.HasPrefix(last.Origin, "JOBS:") || last.Subject != "dlq.high.jetfleet-fail."+a {
		t.Errorf("job a = %+v", last)
	}
	if all[2].Attempts != 0 || !strings.Contains(all[2].Error, `no handler for kind "resize-image"`) || compactJSON(all[2].Body) != `{"item_id":7}` {
		t.Errorf("job b = %+v", all[2])
	}
	if alias := f.jf("queue:failed", "--json"); alias.Stdout != f.jf("queue", "failed", "--json").Stdout {
		t.Errorf("queue:failed --json differs from queue failed --json:\n%s", alias.Stdout)
	}
	filters := map[string][]string{
		d + "," + a:                     {"--queue", "high"},
		d + "," + b:                     {"--kind", "resize-image"},
		c:                               {"--queue", "default", "--kind", "jetfleet-fail"},
		d:                               {"--limit", "1"},
		d + "," + c + "," + b + "," + a: {"--since", "1h"},
	}
	for want, args := range filters {
		if got := viewIDs(failedJSON(t, f.jf(append([]string{"queue", "failed", "--json"}, args...)...))); got != want {
			t.Errorf("failed %v lists %s, want %s", args, got, want)
		}
	}

	table := f.jf("queue", "failed")
	if table.Code != 0 || !strings.HasPrefix(table.Stdout, "ID  ") || !strings.Contains(table.Stdout, "smtp: connection refused") ||
		strings.Contains(table.Stdout, "second line") || strings.Index(table.Stdout, d) > strings.Index(table.Stdout, a) {
		t.Errorf("failed table:\n%s", table.Stdout)
	}
	assertFits80(t, "queue failed", table.Stdout)
	t.Logf("jetfleet queue failed:\n%s", table.Stdout)

	show := f.jf("queue", "show", a)
	for _, want := range []string{"ID:         " + a, "Queue:      high", "Attempts:   1", "Jetfleet-Job-Id: " + a,
		"Error:\n  smtp: connection refused\n  second line of the reason", `"message": "smtp: connection refused\nsecond line of the reason"`} {
		if !strings.Contains(show.Stdout, want) {
			t.Errorf("queue show lacks %q:\n%s", want, show.Stdout)
		}
	}
	assertFits80(t, "queue show", show.Stdout)
	if r := f.jf("queue", "show", "nope"); r.Code != 1 || !strings.Contains(r.Stderr, `no failed job with this ID: "nope"`) {
		t.Errorf("show of an unknown ID: exit %d, stderr %s", r.Code, r.Stderr)
	}
	if r := f.jf("queue", "failed", "--queue", "Bad.Queue"); r.Code != 2 || !strings.Contains(r.Stderr, `queue name "Bad.Queue"`) {
		t.Errorf("bad queue name: exit %d, stderr %s", r.Code, r.Stderr)
	}
	url := fmt.Sprintf("nats://127.0.0.1:%d", natstest.FreePorts(t, 1)[0])
	r := runJF(t, f.dir, testEnv("NATS_URL="+url), "", "queue", "failed")
	if r.Code != 1 || !strings.Contains(r.Stderr, "connect to NATS at "+url) {
		t.Errorf("NATS unreachable: exit %d, stderr %s", r.Code, r.Stderr)
	}
}

func TestQueueRetryRunsJobsAgainFromAttemptOne(t *testing.T) {
	f := newFleet(t)
	f.startWorker(nil, "--queue", "high,default", "--tries", "2", "--backoff", "100ms")
	until := time.Now().Add(3 * time.Second)
	d1 := f.dispatch("default", workers.Fail{Until: until})
	d2 := f.dispatch("default", workers.Fail{Until: until})
	h1 := f.dispatch("high", workers.Fail{Until: until})
	h2 := f.dispatch("high", workers.Fail{Until: until})
	f.waitDLQ(4)
	for _, v := range failedJSON(t, f.jf("queue", "failed", "--json")) {
		if v.Attempts != 2 {
			t.Fatalf("job %s used %d attempts before its dead letter, want 2", v.ID, v.Attempts)
		}
	}
	time.Sleep(time.Until(until)) // from now on the jobs succeed

	if r := f.jf("queue", "retry", d1); r.Code != 0 || r.Stdout != "Retried 1 failed job.\n" {
		t.Fatalf("retry %s: exit %d, %q %s", d1, r.Code, r.Stdout, r.Stderr)
	}
	eventually(t, 10*time.Second, "job "+d1+" to succeed", func() error {
		if len(f.successes()[d1]) == 0 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if r := f.jf("queue", "retry", "all", "--queue", "high"); r.Code != 0 || r.Stdout != "Retried 2 failed jobs.\n" {
		t.Fatalf("retry all --queue high: exit %d, %q %s", r.Code, r.Stdout, r.Stderr)
	}
	if r := f.jf("queue:retry", "all"); r.Code != 0 || r.Stdout != "Retried 1 failed job.\n" {
		t.Fatalf("queue:retry all: exit %d, %q %s", r.Code, r.Stdout, r.Stderr)
	}
	eventually(t, 10*time.Second, "every retried job to succeed", func() error {
		if n := len(f.successes()); n != 4 {
			return fmt.Errorf("%d succeeded", n)
		}
		return nil
	})
	if n := f.streamMsgs(bus.DLQStream); n != 0 {
		t.Fatalf("DLQ still holds %d", n)
	}
	// Acknowledged jobs leave the work queue: with JOBS empty, nothing is
	// left that could run a second time.
	eventually(t, 10*time.Second, "JOBS to be empty", func() error {
		if n := f.streamMsgs(bus.JobsStream); n != 0 {
			return fmt.Errorf("JOBS holds %d", n)
		}
		return nil
	})
	for _, id := range []string{d1, d2, h1, h2} {
		if runs := f.successes()[id]; !slices.Equal(runs, []int{1}) {
			t.Errorf("job %s succeeded on attempts %v, want once on attempt 1", id, runs)
		}
	}
	r := f.jf("queue", "retry", "nope")
	if r.Code != 1 || r.Stdout != "Retried 0 failed jobs.\n" || !strings.Contains(r.Stderr, `no failed job with this ID: "nope"`) {
		t.Errorf("retry of an unknown ID: exit %d, %q, %s", r.Code, r.Stdout, r.Stderr)
	}
}

// A `retry all` killed half-way leaves every job either queued or still in
// DLQ; the next `retry all` queues the rest, and the job that may have
// been queued just before the kill is absorbed by dedupe: every job runs
// exactly once. (bus's TestInterruptedRetryIsTidiedByTheNextRetry stops a
// retry exactly between the two steps; this one kills the real process.)
func TestQueueRetryKilledHalfwayIsTidiedByTheNextRetry(t *testing.T) {
	f := newFleet(t)
	const n = 2000
	for i := range n {
		f.storeDeadLetter(fmt.Sprintf("job-%04d", i), "default", "jetfleet-noop", "x", uint64(i+1))
	}
	p := startProc(t, f.dir, f.env, "queue", "retry", "all")
	eventually(t, 30*time.Second, "the retry to be under way", func() error {
		if left := f.streamMsgs(bus.DLQStream); left > n*3/4 {
			return fmt.Errorf("%d left", left)
		}
		return nil
	})
	if err := p.Cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-p.Done
	queued, left := f.streamMsgs(bus.JobsStream), f.streamMsgs(bus.DLQStream)
	t.Logf("killed with %d jobs queued and %d dead letters left", queued, left)
	if left == 0 || queued+left < n {
		t.Fatalf("after the kill: %d queued + %d left, want %d and some left", queued, left, n)
	}
	if r := f.jf("queue", "retry", "all"); r.Code != 0 {
		t.Fatalf("second retry: exit %d, %s", r.Code, r.Stderr)
	}
	if q, l := f.streamMsgs(bus.JobsStream), f.streamMsgs(bus.DLQStream); q != n || l != 0 {
		t.Fatalf("after the second retry: %d queued (want %d), %d left in DLQ", q, n, l)
	}
	f.startWorker(nil, "--concurrency", "20")
	eventually(t, 60*time.Second, "all jobs to run", func() error {
		if q := f.streamMsgs(bus.JobsStream); q != 0 {
			return fmt.Errorf("%d queued", q)
		}
		return nil
	})
	ran := f.successes()
	for i := range n {
		if id := fmt.Sprintf("job-%04d", i); len(ran[id]) != 1 {
			t.Fatalf("job %s ran %d times", id, len(ran[id]))
		}
	}
}

func TestQueueForgetAndFlush(t *testing.T) {
	f := newFleet(t)
	f.storeDeadLetter("a", "default", "resize-image", "x", 1)
	f.storeDeadLetter("b", "default", "resize-image", "x", 2)
	f.storeDeadLetter("c", "default", "resize-image", "x", 3)
	f.storeDeadLetter("e", "high", "resize-image", "x", 4)
	time.Sleep(2500 * time.Millisecond)
	f.storeDeadLetter("d", "default", "resize-image", "x", 5)

	if r := f.jf("queue", "forget", "b"); r.Code != 0 || r.Stdout != "Deleted 1 failed job.\n" {
		t.Fatalf("forget b: exit %d, %q %s", r.Code, r.Stdout, r.Stderr)
	}
	if got := viewIDs(failedJSON(t, f.jf("queue", "failed", "--json"))); got != "d,e,c,a" {
		t.Fatalf("after forget b: %s", got)
	}
	if r := f.jf("queue:forget", "b"); r.Code != 1 || !strings.Contains(r.Stderr, `no failed job with this ID: "b"`) {
		t.Fatalf("forget b again: exit %d, %s", r.Code, r.Stderr)
	}
	// 0.0005 hours is 1.8 seconds: a and c are older, d is younger.
	if r := f.jf("queue", "flush", "--hours", "0.0005", "--queue", "default"); r.Code != 0 || r.Stdout != "Deleted 2 failed jobs.\n" {
		t.Fatalf("flush --hours --queue default: exit %d, %q %s", r.Code, r.Stdout, r.Stderr)
	}
	if got := viewIDs(failedJSON(t, f.jf("queue", "failed", "--json"))); got != "d,e" {
		t.Fatalf("after flush: %s", got)
	}
	if r := f.jf("queue:flush"); r.Code != 0 || r.Stdout != "Deleted 2 failed jobs.\n" {
		t.Fatalf("queue:flush: exit %d, %q %s", r.Code, r.Stdout, r.Stderr)
	}
	if r := f.jf("queue", "failed"); r.Stdout != "No failed jobs.\n" {
		t.Fatalf("after flushing all: %q", r.Stdout)
	}
}
