package workers_test

import (
	"context"
	"errors"
	"math"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/workers"
)

// failing fails until its attempt reaches SucceedAt (never when 0).
type failing struct {
	SucceedAt int `json:"succeed_at"`
}

func (failing) Kind() string { return "failing" }

// storedRetries waits until queue default has nothing ready or
// unacknowledged, then returns an Inspector and the delayed jobs in JOBS.
func storedRetries(t *testing.T, e *env) (*bus.Inspector, []bus.DelayedJob) {
	t.Helper()
	waitFor(t, 10*time.Second, "the failed job leaves the unacknowledged", func() bool {
		info := consumerInfo(t, e.js, "default")
		return info.NumAckPending == 0 && info.NumPending == 0
	})
	in, err := bus.NewInspector(e.js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var delayed []bus.DelayedJob
	if _, err := in.ScanDelayed(context.Background(), 1, 100, func(d bus.DelayedJob) { delayed = append(delayed, d) }); err != nil {
		t.Fatal(err)
	}
	return in, delayed
}

// TestALongRetryWaitHoldsNoUnacknowledgedSlot: a failed job whose next try
// is a minute or more away is stored again as a delayed job that counts
// the try, so that it does not sit among its queue's unacknowledged jobs
// (MaxAckPending) for the whole wait; the stored retries run as the next
// tries, after their waits, and the last failure is dead-lettered with
// every try counted.
func TestALongRetryWaitHoldsNoUnacknowledgedSlot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	ctx := context.Background()

	// With the shipped threshold: a 2-minute backoff.
	w := workers.New(e.js, workers.Config{Backoff: []time.Duration{2 * time.Minute}})
	ran := make(chan int, 4)
	workers.Register(w, func(ctx context.Context, j *workers.Job[failing]) error {
		ran <- j.Attempt
		return errors.New("upstream down")
	})
	stop := start(t, w)
	id := dispatch(t, e, failing{}, bus.Tries(3))
	if a := <-ran; a != 1 {
		t.Fatalf("first run was attempt %d", a)
	}
	failedAt := time.Now()
	in, delayed := storedRetries(t, e)
	if len(delayed) != 1 || delayed[0].Token != id || delayed[0].ReadyAt.Before(failedAt.Add(110*time.Second)) || delayed[0].ReadyAt.After(failedAt.Add(2*time.Minute)) {
		t.Fatalf("delayed jobs %+v, want job %s ready about 2m after it failed (%s)", delayed, id, failedAt.Format(time.RFC3339Nano))
	}
	st, err := in.Job(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != bus.JobRetrying || st.Attempt != 1 || st.Error != "upstream down" || st.Note != "" ||
		st.NextAttemptAt.Sub(delayed[0].ReadyAt).Abs() > time.Second {
		t.Errorf("queue job while the retry waits: %s attempt %d error %q next %s note %q; want retrying, attempt 1, upstream down, next %s, no note",
			st.State, st.Attempt, st.Error, st.NextAttemptAt, st.Note, delayed[0].ReadyAt)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Cancel(ctx, id); err != nil {
		t.Fatalf("cancel the job while its retry waits: %v", err)
	}
	if n := natstest.StreamMsgs(t, e.js, bus.JobsStream); n != 0 {
		t.Fatalf("JOBS holds %d messages after the waiting retry was cancelled, want 0", n)
	}

	// Stored retries run as the next tries, after their waits.
	w = workers.New(e.js, workers.Config{Backoff: []time.Duration{400 * time.Millisecond}})
	workers.SetStoreRetriesFrom(w, 0)
	var mu sync.Mutex
	runs := map[string][]attempt{}
	workers.Register(w, func(ctx context.Context, j *workers.Job[failing]) error {
		mu.Lock()
		runs[j.ID] = append(runs[j.ID], attempt{attempt: j.Attempt, released: j.Released, at: time.Now()})
		mu.Unlock()
		if j.Args.SucceedAt == 0 || j.Attempt < j.Args.SucceedAt {
			return errors.New("upstream down")
		}
		return nil
	})
	start(t, w)
	ok := dispatch(t, e, failing{SucceedAt: 3}, bus.Tries(3))
	dead := dispatch(t, e, failing{}, bus.Tries(2))
	waitFor(t, 20*time.Second, "one job succeeds and one is dead-lettered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(runs[ok]) == 3 && len(runs[dead]) == 2 && len(deadLetters(t, e.js)) == 1
	})
	mu.Lock()
	defer mu.Unlock()
	for id, n := range map[string]int{ok: 3, dead: 2} {
		for i, r := range runs[id] {
			if r.attempt != i+1 || r.released != 0 {
				t.Errorf("job %s: run %d was attempt %d released %d, want attempt %d released 0", id, i+1, r.attempt, r.released, i+1)
			}
			if i > 0 && r.at.Sub(runs[id][i-1].at) < 400*time.Millisecond {
				t.Errorf("job %s: run %d came %s after a failure with backoff 400ms", id, i+1, r.at.Sub(runs[id][i-1].at))
			}
		}
		if len(runs[id]) != n {
			t.Errorf("job %s ran %d times, want %d", id, len(runs[id]), n)
		}
	}
	dl := deadLetters(t, e.js)[0]
	if dl.Header.Get(bus.HeaderJobID) != dead || dl.Header.Get(bus.HeaderAttempts) != "2" || dl.Header.Get(bus.HeaderTriesUsed) != "" || dl.Header.Get(bus.HeaderReleased) != "" {
		t.Errorf("dead letter headers %v: want job %s, Jetfleet-Attempts 2, no Jetfleet-Tries-Used or Jetfleet-Released", dl.Header, dead)
	}
	waitIdle(t, e, "default")
	if n := natstest.StreamMsgs(t, e.js, bus.JobsStream); n != 0 {
		t.Errorf("JOBS holds %d messages, want 0", n)
	}
}

// TestABackoffOfCenturiesWaitsUntilTheLastSchedulableTime: a job's own
// backoff of 292 years (the largest duration its header can say) stores
// its retry for the last time JetStream's scheduler can hold (2262), and
// the job does not run again meanwhile.
func TestABackoffOfCenturiesWaitsUntilTheLastSchedulableTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	w := workers.New(e.js, workers.Config{})
	ran := make(chan int, 4)
	workers.Register(w, func(ctx context.Context, j *workers.Job[failing]) error {
		ran <- j.Attempt
		return errors.New("upstream down")
	})
	start(t, w)
	id := dispatch(t, e, failing{}, bus.Tries(3), bus.Backoff(time.Duration(math.MaxInt64)))
	<-ran
	_, delayed := storedRetries(t, e)
	if len(delayed) != 1 || delayed[0].Token != id || !delayed[0].ReadyAt.Equal(bus.LastReadyAt()) {
		t.Fatalf("delayed jobs %+v, want job %s due at %s", delayed, id, bus.LastReadyAt())
	}
	select {
	case a := <-ran:
		t.Fatalf("the job ran again (attempt %d) within 2s of a backoff of 292 years", a)
	case <-time.After(2 * time.Second):
	}
}

// TestStoredRetriesSurviveAWorkerKilled: 3 worker processes store every
// retry again (the threshold at 1ns) while 300 jobs each fail their first
// attempt; one process is killed with SIGKILL mid-run. Every job then
// succeeds (at attempt 2 or later) or sits in DLQ, and JOBS ends empty: a
// retry stored but not yet acknowledged, or acknowledged but not yet
// stored, loses nothing.
func TestStoredRetriesSurviveAWorkerKilled(t *testing.T) {
	url, d := fleetEnv(t, bus.Config{AckWait: 2 * time.Second})
	_, js := natstest.Connect(t, url)
	ps := startWorkers(t, 3, url, "HELPER_STORE_RETRIES_FROM=1ns", "HELPER_ACK_WAIT=2s", "HELPER_TRIES=3", "HELPER_CONCURRENCY=8")
	jobs := make([]fleetJob, 300)
	for i := range jobs {
		jobs[i] = fleetJob{N: i, MS: 20, FailUntil: 2}
	}
	ids := dispatchFleetJobs(t, d, jobs)
	waitEvents(t, ps, 30*time.Second, "100 starts", func(evs []event) bool { return len(evs) >= 200 })
	if err := ps[0].Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-ps[0].Done
	succeeded := func(evs []event) map[int]bool {
		ok := map[int]bool{}
		for _, e := range evs {
			if e.Ev == "end" && e.Attempt >= 2 {
				ok[e.N] = true
			}
		}
		return ok
	}
	var dead map[string]bool
	evs := waitEvents(t, ps, 60*time.Second, "every job succeeded or dead-lettered", func(evs []event) bool {
		dead = failedIDs(t, js)
		return len(succeeded(evs))+len(dead) >= len(jobs) && natstest.StreamMsgs(t, js, bus.JobsStream) == 0
	})
	ok := succeeded(evs)
	var lost []int
	for i, id := range ids {
		if !ok[i] && !dead[id] {
			lost = append(lost, i)
		}
	}
	stored := 0
	for _, e := range evs {
		if e.Ev == "start" && e.Attempt == 2 {
			stored++
		}
	}
	// Each stored retry adds two messages to JOBS (the schedule and the job
	// it publishes), where a NAK adds none: the retries went the stored way.
	info, err := js.Stream(context.Background(), bus.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	last := info.CachedInfo().State.LastSeq
	t.Logf("%d jobs: %d succeeded, %d dead-lettered, %d second attempts started; JOBS empty, its last sequence %d", len(jobs), len(ok), len(dead), stored, last)
	if last < uint64(len(jobs))+2*uint64(len(jobs))*9/10 {
		t.Errorf("JOBS's last sequence is %d: fewer than 9 in 10 of %d retries were stored again", last, len(jobs))
	}
	if len(lost) > 0 {
		t.Fatalf("jobs neither succeeded nor dead-lettered: %v", lost)
	}
}
