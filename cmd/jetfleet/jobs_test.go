package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/workers"
)

// queueJob runs `jetfleet queue job <id> --json` and decodes it; ok is
// false when the command failed (its stderr is in msg).
func (f *fleet) queueJob(id string) (st *bus.JobStatus, msg string, ok bool) {
	f.t.Helper()
	r := f.jf("queue", "job", id, "--json")
	if r.Code != 0 {
		return nil, strings.TrimSpace(r.Stderr), false
	}
	st = &bus.JobStatus{}
	if err := json.Unmarshal([]byte(r.Stdout), st); err != nil {
		f.t.Fatalf("queue job --json does not parse: %v\n%s", err, r.Stdout)
	}
	return st, "", true
}

// waitState waits until both `jetfleet queue job` and Inspector.Job say
// the job is in state and check accepts what they say, and returns the
// CLI's answer.
func (f *fleet) waitState(in *bus.Inspector, id string, state bus.JobState, timeout time.Duration, check func(*bus.JobStatus) error) *bus.JobStatus {
	f.t.Helper()
	var got *bus.JobStatus
	eventually(f.t, timeout, fmt.Sprintf("job %s %s", id, state), func() error {
		st, msg, ok := f.queueJob(id)
		if !ok {
			return fmt.Errorf("queue job: %s", msg)
		}
		direct, err := in.Job(context.Background(), id)
		if err != nil {
			return fmt.Errorf("Inspector.Job: %v", err)
		}
		for who, s := range map[string]*bus.JobStatus{"queue job": st, "Inspector.Job": direct} {
			if s.State != state {
				return fmt.Errorf("%s says %s (%s), want %s", who, s.State, s.Note, state)
			}
			if check != nil {
				if err := check(s); err != nil {
					return fmt.Errorf("%s: %v", who, err)
				}
			}
		}
		got = st
		return nil
	})
	text := f.jf("queue", "job", id)
	if text.Code != 0 || !strings.Contains(text.Stdout, "State:") {
		f.t.Fatalf("queue job %s: exit %d\n%s%s", id, text.Code, text.Stdout, text.Stderr)
	}
	f.t.Logf("%s", firstLines(text.Stdout, 3))
	return got
}

// compact is JSON without its white space.
func compact(b []byte) string {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return string(b)
	}
	return buf.String()
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	return strings.Join(lines[:min(n, len(lines))], "\n")
}

func on(worker *proc) func(*bus.JobStatus) error {
	return func(st *bus.JobStatus) error {
		if !strings.HasSuffix(st.Worker, fmt.Sprintf(":%d", worker.Cmd.Process.Pid)) {
			return fmt.Errorf("runs on %s, want the worker of pid %d", st.Worker, worker.Cmd.Process.Pid)
		}
		return nil
	}
}

// TestJobThroughEveryState is the life of a job, followed with
// `jetfleet queue job` and Inspector.Job at each step: delayed; ready
// (its queue paused); running on a worker process with its attempt and
// progress; ready again after that worker is killed with SIGKILL; running
// on a second worker; retrying after its second attempt fails, with the
// next attempt's time; succeeded with its run time and result. Two more
// jobs show the other final states: dead (with its dead letter) and
// cancelled.
func TestJobThroughEveryState(t *testing.T) {
	t.Parallel()
	f := newFleet(t)
	in, err := bus.NewInspector(f.js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.EnsureQueues(context.Background(), f.js, bus.Config{}, "default"); err != nil {
		t.Fatal(err)
	}
	if r := f.jf("queue", "pause", "default"); r.Code != 0 {
		t.Fatalf("pause: %s", r.Stderr)
	}
	// It fails its first two attempts and succeeds on the third; each
	// attempt first sleeps 4 s, reporting progress. Each state lasts
	// seconds (the delay 4 s, the retry's backoff 5 s), so a loaded machine
	// still sees it.
	id := f.dispatch("default", workers.Fail{Times: 2, MS: 4000}, bus.Delay(4*time.Second), bus.Tries(5), bus.Backoff(5*time.Second), bus.Tags("user:7"))
	f.waitState(in, id, bus.JobDelayed, 10*time.Second, func(st *bus.JobStatus) error {
		if st.ReadyAt.IsZero() || len(st.Tags) != 1 || st.Tags[0] != "user:7" {
			return fmt.Errorf("ready at %v, tags %v", st.ReadyAt, st.Tags)
		}
		return nil
	})
	f.waitState(in, id, bus.JobReady, 20*time.Second, nil)

	work := []string{"--queue", "default", "--ack-wait", "3s", "--concurrency", "2"}
	first := f.startWorker(nil, work...)
	if r := f.jf("queue", "resume", "default"); r.Code != 0 {
		t.Fatalf("resume: %s", r.Stderr)
	}
	f.waitState(in, id, bus.JobRunning, 20*time.Second, func(st *bus.JobStatus) error {
		if err := on(first)(st); err != nil {
			return err
		}
		if st.Attempt != 1 || st.Tries != 5 || st.Progress == nil || st.StartedAt.IsZero() {
			return fmt.Errorf("attempt %d of %d, progress %+v, started %v", st.Attempt, st.Tries, st.Progress, st.StartedAt)
		}
		return nil
	})
	if err := first.Cmd.Process.Kill(); err != nil { // SIGKILL: no drain, no hand-back
		t.Fatal(err)
	}
	<-first.Done
	f.waitState(in, id, bus.JobReady, 10*time.Second, func(st *bus.JobStatus) error {
		if !strings.Contains(st.Note, "stopped") {
			return fmt.Errorf("note %q does not say its worker stopped", st.Note)
		}
		return nil
	})

	second := f.startWorker(nil, work...)
	f.waitState(in, id, bus.JobRunning, 30*time.Second, func(st *bus.JobStatus) error {
		if err := on(second)(st); err != nil {
			return err
		}
		if st.Attempt != 2 {
			return fmt.Errorf("attempt %d, want 2", st.Attempt)
		}
		return nil
	})
	f.waitState(in, id, bus.JobRetrying, 30*time.Second, func(st *bus.JobStatus) error {
		if st.Attempt != 2 || st.NextAttemptAt.IsZero() || !strings.Contains(st.Error, "attempt 2 fails") {
			return fmt.Errorf("attempt %d, next at %v, error %q", st.Attempt, st.NextAttemptAt, st.Error)
		}
		return nil
	})
	done := f.waitState(in, id, bus.JobSucceeded, 30*time.Second, func(st *bus.JobStatus) error {
		if st.Attempt != 3 || st.RunTime < 4*time.Second || compact(st.Result) != `{"attempts":3}` || st.FinishedAt.IsZero() {
			return fmt.Errorf("attempt %d, run time %s, result %s, finished %v", st.Attempt, st.RunTime, st.Result, st.FinishedAt)
		}
		return on(second)(st)
	})
	if got := f.successes()[id]; len(got) != 1 || got[0] != 3 {
		t.Fatalf("successful attempts logged: %v, want exactly attempt 3", got)
	}
	t.Logf("succeeded after %s, result %s", done.RunTime, done.Result)

	dead := f.dispatch("default", workers.Fail{Message: "smtp: 421"}, bus.Tries(1))
	f.waitState(in, dead, bus.JobDead, 20*time.Second, func(st *bus.JobStatus) error {
		if st.DeadLetter == nil || st.DeadLetter.Seq == 0 || st.Error != "smtp: 421" {
			return fmt.Errorf("dead letter %+v, error %q", st.DeadLetter, st.Error)
		}
		return nil
	})
	if r := f.jf("queue", "pause", "default"); r.Code != 0 {
		t.Fatalf("pause: %s", r.Stderr)
	}
	waiting := f.dispatch("default", workers.Noop{})
	if r := f.jf("queue", "cancel", waiting); r.Code != 0 || !strings.Contains(r.Stdout, "waiting for a worker") {
		t.Fatalf("queue cancel: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	f.waitState(in, waiting, bus.JobCancelled, 10*time.Second, nil)

	// What is finished or unknown cannot be cancelled: exit 1, saying so.
	for id, want := range map[string]string{id: "already finished", "no-such-job": "no job with this ID"} {
		if r := f.jf("queue", "cancel", id); r.Code != 1 || !strings.Contains(r.Stderr, want) {
			t.Errorf("queue cancel %s: exit %d, stderr %q; want 1 and %q", id, r.Code, r.Stderr, want)
		}
	}
	if r := f.jf("queue", "job", "no-such-job"); r.Code != 1 || !strings.Contains(r.Stderr, "no job with this ID") {
		t.Errorf("queue job of an unknown ID: exit %d, stderr %q", r.Code, r.Stderr)
	}
	if r := f.jf("queue", "jobs", "--tag", "user:7"); r.Code != 0 || !strings.Contains(r.Stdout, id) || !strings.Contains(r.Stdout, "succeeded") {
		t.Errorf("queue jobs --tag user:7: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
}

// TestAQueueFilterNamesAnUnknownQueue: a --queue filter that finds
// nothing says on stderr when no queue has that name, naming the known
// ones, so a typo does not read as an empty queue; a known queue gets no
// note, and an empty listing says where the waiting jobs are.
func TestAQueueFilterNamesAnUnknownQueue(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	env := testEnv("NATS_URL=" + srv.ClientURL())
	dir := t.TempDir()
	if r := runJF(t, dir, env, "", "dispatch", "default", "jetfleet-noop", "{}"); r.Code != 0 {
		t.Fatalf("dispatch: exit %d: %s", r.Code, r.Stderr)
	}
	const note = `jetfleet queue: note: unknown queue "defualt" (known queues: default)`
	for _, args := range [][]string{
		{"failed", "--queue", "defualt"},
		{"failed", "--queue", "defualt", "--json"},
		{"flush", "--queue", "defualt"},
		{"retry", "all", "--queue", "defualt"},
		{"jobs", "--queue", "defualt"},
	} {
		name := strings.Join(args, " ")
		r := runJF(t, dir, env, "", append([]string{"queue"}, args...)...)
		if r.Code != 0 || !strings.Contains(r.Stderr, note) {
			t.Errorf("queue %s: exit %d, stderr %q; want 0 and %q", name, r.Code, r.Stderr, note)
		}
		known := runJF(t, dir, env, "", append([]string{"queue"}, strings.Split(strings.ReplaceAll(name, "defualt", "default"), " ")...)...)
		if known.Code != 0 || strings.Contains(known.Stderr, "note:") {
			t.Errorf("queue %s on the known queue: exit %d, stderr %q; want 0 and no note", name, known.Code, known.Stderr)
		}
	}
	r := runJF(t, dir, env, "", "queue", "jobs")
	if r.Code != 0 || !strings.Contains(r.Stdout, "No jobs found. (Waiting jobs are listed with --state ready") {
		t.Errorf("queue jobs with one job waiting: exit %d, stdout %q", r.Code, r.Stdout)
	}
	if r = runJF(t, dir, env, "", "queue", "jobs", "--state", "ready"); r.Code != 0 || !strings.Contains(r.Stdout, "jetfleet-noop") {
		t.Errorf("queue jobs --state ready: exit %d, stdout %q", r.Code, r.Stdout)
	}
}
