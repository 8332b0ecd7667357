package workers_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/workers"
)

// capped and free are two kinds on one queue: capped has MaxConcurrent(1).
type capped struct{ N int }

func (capped) Kind() string { return "capped" }

type free struct{ N int }

func (free) Kind() string { return "free" }

// TestWaitingJobsBlockNothingElse: 20 jobs of a kind capped at 1, queued
// before 20 jobs of another kind on the same queue, do not hold the others
// up: the worker keeps fetching and runs them while the capped ones wait
// (outside its run slots) for their turn, one at a time.
func TestWaitingJobsBlockNothingElse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	var mu sync.Mutex
	var cappedDone, freeDone []time.Time
	running, most := 0, 0
	w := workers.New(e.js, workers.Config{Concurrency: 4})
	workers.Register(w, func(ctx context.Context, j *workers.Job[capped]) error {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		time.Sleep(100 * time.Millisecond)
		mu.Lock()
		running--
		cappedDone = append(cappedDone, time.Now())
		mu.Unlock()
		return nil
	}, workers.MaxConcurrent(1))
	workers.Register(w, func(ctx context.Context, j *workers.Job[free]) error {
		mu.Lock()
		freeDone = append(freeDone, time.Now())
		mu.Unlock()
		return nil
	})
	for i := range 20 {
		dispatch(t, e, capped{N: i})
	}
	for i := range 20 {
		dispatch(t, e, free{N: i})
	}
	began := time.Now()
	start(t, w)
	waitFor(t, 20*time.Second, "every job ends", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(cappedDone) == 20 && len(freeDone) == 20
	})
	mu.Lock()
	defer mu.Unlock()
	t.Logf("the 20 free jobs were done after %s, the 20 capped ones (100ms each, one at a time) after %s",
		freeDone[19].Sub(began).Round(time.Millisecond), cappedDone[19].Sub(began).Round(time.Millisecond))
	if most != 1 {
		t.Errorf("%d capped jobs ran at once, want 1", most)
	}
	if !freeDone[19].Before(cappedDone[10]) {
		t.Errorf("the free jobs waited behind the capped ones: last free at %s, 11th capped at %s", freeDone[19].Sub(began), cappedDone[10].Sub(began))
	}
}

type keyed struct{ User string }

func (keyed) Kind() string { return "keyed" }

// TestBadLimitKeyIsDeadLettered: a job whose MaxConcurrentBy key is empty
// or too long can never be limited: it is dead-lettered unrun with the
// reason, and the other jobs run.
func TestBadLimitKeyIsDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	var mu sync.Mutex
	ran := map[string]bool{}
	w := workers.New(e.js, workers.Config{})
	workers.Register(w, func(ctx context.Context, j *workers.Job[keyed]) error {
		mu.Lock()
		ran[j.Args.User] = true
		mu.Unlock()
		return nil
	}, workers.MaxConcurrentBy(1, func(j *workers.Job[keyed]) string { return j.Args.User }))
	start(t, w)
	empty := dispatch(t, e, keyed{User: ""})
	long := dispatch(t, e, keyed{User: strings.Repeat("u", 129)})
	dispatch(t, e, keyed{User: "ann"})
	waitFor(t, 10*time.Second, "two dead letters and ann's job", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(deadLetters(t, e.js)) == 2 && ran["ann"]
	})
	for _, dl := range deadLetters(t, e.js) {
		id, reason := dl.Header.Get(bus.HeaderJobID), dl.Header.Get(bus.HeaderError)
		want := map[string]string{empty: "limit key is empty", long: "limit key is 129 bytes; the limit is 128"}[id]
		if want == "" || !strings.Contains(reason, want) || dl.Header.Get(bus.HeaderAttempts) != "0" {
			t.Errorf("dead letter of %s: %q (attempts %s), want %q and 0 attempts", id, reason, dl.Header.Get(bus.HeaderAttempts), want)
		}
	}
	if len(ran) != 1 {
		t.Errorf("ran %v, want only ann's job", ran)
	}
}

// TestAJobCancelledWhileItWaitsForItsLimitNeverRuns: a job cancelled while
// it waits in a worker for its kind's cap is not stored again when that
// worker drains (its original is purged: a copy would run anywhere), and
// a worker started afterwards, which never heard the cancel, does not run
// it.
func TestAJobCancelledWhileItWaitsForItsLimitNeverRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	ctx := context.Background()
	var mu sync.Mutex
	ran := map[int]int{}
	started, release := make(chan struct{}, 1), make(chan struct{})
	newWorker := func() *workers.Worker {
		w := workers.New(e.js, workers.Config{Concurrency: 2, Grace: 10 * time.Second})
		workers.Register(w, func(ctx context.Context, j *workers.Job[capped]) error {
			mu.Lock()
			ran[j.Args.N]++
			mu.Unlock()
			if j.Args.N == 0 {
				started <- struct{}{}
				<-release
			}
			return nil
		}, workers.MaxConcurrent(1))
		return w
	}
	if _, err := e.d.Dispatch(ctx, capped{N: 0}, bus.JobID("holder")); err != nil {
		t.Fatal(err)
	}
	stop := start(t, newWorker())
	<-started
	if _, err := e.d.Dispatch(ctx, capped{N: 1}, bus.JobID("waiting")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the second job fetched and waiting for the cap", func() bool {
		return consumerInfo(t, e.js, "default").NumAckPending == 2
	})
	in, err := bus.NewInspector(e.js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Cancel(ctx, "waiting"); err != nil {
		t.Fatal(err)
	}
	go func() { time.Sleep(200 * time.Millisecond); close(release) }()
	if err := stop(); err != nil { // the drain hands waiting jobs back
		t.Fatal(err)
	}
	start(t, newWorker())
	waitIdle(t, e, "default")
	time.Sleep(time.Second) // a copy stored by the drain would be fetched and run by now
	mu.Lock()
	defer mu.Unlock()
	if ran[1] != 0 || ran[0] != 1 {
		t.Fatalf("runs by job: %v; want the holder once and the cancelled job never", ran)
	}
}
