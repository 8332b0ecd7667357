package metrics_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/promtest"
	"github.com/jetfleet/jetfleet/metrics"
	"github.com/jetfleet/jetfleet/workers"
)

// TestJobCountersMoveByExactlyTheWorkDone dispatches 10 jobs of which 2
// always fail with 2 tries, runs them on a real worker, and reads the
// counters from the served endpoint: 10 dispatched, 12 attempts started,
// 8 succeeded, 4 failed attempts, 2 retried, 2 dead-lettered; the
// histograms hold one run time per attempt and one wait per job.
func TestJobCountersMoveByExactlyTheWorkDone(t *testing.T) {
	e := newEnv(t, "default")
	ctx := context.Background()
	d, err := bus.NewDispatcher(e.js, bus.Config{OnDispatched: e.jobs.Dispatched})
	if err != nil {
		t.Fatal(err)
	}
	w := workers.New(e.js, workers.Config{
		Tries: 2, Backoff: []time.Duration{10 * time.Millisecond},
		Middleware: []workers.Middleware{e.jobs.Middleware()},
		OnOutcome:  e.jobs.Outcome,
	})
	workers.RegisterDiagnostics(w)
	for range 8 {
		if _, err := d.Dispatch(ctx, workers.Noop{}); err != nil {
			t.Fatal(err)
		}
	}
	jobs := []bus.DispatchManyParams{{Args: workers.Fail{}}, {Args: workers.Fail{}}}
	if _, err := d.DispatchMany(ctx, jobs...); err != nil {
		t.Fatal(err)
	}
	run(t, w)

	f := e.waitFor(t, "2 dead letters and 8 successes", func(f promtest.Families) bool {
		return f.Sum("jetfleet_jobs_dead_lettered_total") == 2 && f.Sum("jetfleet_jobs_processed_total", "outcome", "succeeded") == 8
	})
	want := []struct {
		name  string
		match []string
		value float64
	}{
		{"jetfleet_jobs_dispatched_total", nil, 10},
		{"jetfleet_jobs_dispatched_total", []string{"queue", "default", "kind", "jetfleet-fail"}, 2},
		{"jetfleet_jobs_started_total", nil, 12},
		{"jetfleet_jobs_processed_total", []string{"outcome", "succeeded", "kind", "jetfleet-noop"}, 8},
		{"jetfleet_jobs_processed_total", []string{"outcome", "failed", "kind", "jetfleet-fail"}, 4},
		{"jetfleet_jobs_processed_total", []string{"outcome", "failed", "kind", "jetfleet-noop"}, 0},
		{"jetfleet_jobs_retried_total", []string{"kind", "jetfleet-fail"}, 2},
		{"jetfleet_jobs_dead_lettered_total", []string{"queue", "default", "kind", "jetfleet-fail"}, 2},
		{"jetfleet_jobs_handed_back_total", nil, 0},
		{"jetfleet_job_run_duration_seconds", nil, 12},
		{"jetfleet_job_wait_duration_seconds", nil, 10},
	}
	for _, w := range want {
		if got := f.Sum(w.name, w.match...); got != w.value {
			t.Errorf("%s%v = %v, want %v", w.name, w.match, got, w.value)
		}
	}
	for _, name := range []string{"jetfleet_jobs_started_total", "jetfleet_jobs_processed_total"} {
		for _, l := range []string{"queue", "kind"} {
			if got := f.Labels(name, l); len(got) == 0 {
				t.Errorf("%s has no %s label", name, l)
			}
		}
	}
	if ids := f.Labels("jetfleet_jobs_processed_total", "job_id"); len(ids) > 0 {
		t.Errorf("job IDs became labels: %v", ids)
	}
}

// TestPanickingHandlerCountsAsFailed: a panic is a failed attempt, and the
// worker's recovery still dead-letters the job.
func TestPanickingHandlerCountsAsFailed(t *testing.T) {
	e := newEnv(t, "default")
	d, _ := bus.NewDispatcher(e.js, bus.Config{OnDispatched: e.jobs.Dispatched})
	w := workers.New(e.js, workers.Config{
		Tries: 1, Middleware: []workers.Middleware{e.jobs.Middleware()}, OnOutcome: e.jobs.Outcome,
	})
	workers.Register(w, func(context.Context, *workers.Job[panics]) error { panic("boom") })
	if _, err := d.Dispatch(context.Background(), panics{}); err != nil {
		t.Fatal(err)
	}
	run(t, w)
	f := e.waitFor(t, "one dead letter", func(f promtest.Families) bool {
		return f.Sum("jetfleet_jobs_dead_lettered_total", "kind", "panics") == 1
	})
	if got := f.Sum("jetfleet_jobs_processed_total", "kind", "panics", "outcome", metrics.OutcomeFailed); got != 1 {
		t.Errorf("failed attempts = %v, want 1", got)
	}
}

type panics struct{}

func (panics) Kind() string { return "panics" }

// TestLimitKindsBoundsTheKindLabel: after LimitKinds, a dead letter,
// dispatch or attempt of any other kind is counted under UnknownKind; the
// allowed kinds keep their own label.
func TestLimitKindsBoundsTheKindLabel(t *testing.T) {
	e := newEnv(t, "default")
	e.jobs.LimitKinds([]string{"jetfleet-noop"})
	for i := range 20 {
		e.jobs.Outcome("default", "made-up-"+strconv.Itoa(i), workers.DeadLettered)
		e.jobs.Dispatched("default", "made-up-"+strconv.Itoa(i))
	}
	e.jobs.Outcome("default", "jetfleet-noop", workers.Retried)
	f := e.scrape(t)
	for _, name := range []string{"jetfleet_jobs_dead_lettered_total", "jetfleet_jobs_dispatched_total"} {
		if got := f.Labels(name, "kind"); len(got) != 1 || got[0] != metrics.UnknownKind || f.Sum(name) != 20 {
			t.Errorf("%s: kinds %q, sum %v; want only %q, 20", name, got, f.Sum(name), metrics.UnknownKind)
		}
	}
	if got := f.Sum("jetfleet_jobs_retried_total", "kind", "jetfleet-noop"); got != 1 {
		t.Errorf("retries of jetfleet-noop = %v, want 1", got)
	}
}

// TestCancelledJobIsCounted: a running job cancelled with the Inspector
// moves jetfleet_jobs_cancelled_total, and nothing else but its start and
// its failed attempt.
func TestCancelledJobIsCounted(t *testing.T) {
	e := newEnv(t, "default")
	ctx := context.Background()
	w := workers.New(e.js, workers.Config{Middleware: []workers.Middleware{e.jobs.Middleware()}, OnOutcome: e.jobs.Outcome})
	workers.RegisterDiagnostics(w)
	run(t, w)
	d, _ := bus.NewDispatcher(e.js, bus.Config{})
	in, _ := bus.NewInspector(e.js, bus.Config{})
	id, err := d.Dispatch(ctx, workers.Sleep{MS: 30_000})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, err := in.Job(ctx, id); err == nil && st.State == bus.JobRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the job never ran")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := in.Cancel(ctx, id); err != nil {
		t.Fatal(err)
	}
	f := e.waitFor(t, "one cancelled job", func(f promtest.Families) bool {
		return f.Sum("jetfleet_jobs_cancelled_total", "queue", "default", "kind", "jetfleet-sleep") == 1
	})
	for name, want := range map[string]float64{"jetfleet_jobs_retried_total": 0, "jetfleet_jobs_dead_lettered_total": 0, "jetfleet_jobs_started_total": 1} {
		if got := f.Sum(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}
