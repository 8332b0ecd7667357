package workers_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/workers"
)

// flood is a job whose handler reports its progress N times.
type flood struct {
	N int `json:"n"`
}

func (flood) Kind() string { return "flood" }

// TestProgressFloodIsRateLimited is the progress flood: a handler
// calling Progress 100,000 times (spread over about 2.5 seconds) makes at
// most one progress write per bus.ProgressInterval, plus the final record,
// counted on the record's subject as the server receives them; the last
// report is what the final record keeps, with the result.
func TestProgressFloodIsRateLimited(t *testing.T) {
	e := newEnv(t, bus.Config{MemoryStorage: true})
	nc := e.js.Conn()
	writes := make(chan *nats.Msg, 1000)
	sub, err := nc.ChanSubscribe(bus.StatusPrefix+".>", writes)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	var took time.Duration
	w := workers.New(e.js, workers.Config{})
	workers.Register(w, func(ctx context.Context, j *workers.Job[flood]) error {
		began := time.Now()
		for i := range j.Args.N {
			if err := j.Progress(ctx, float64(i+1)/float64(j.Args.N), fmt.Sprintf("step %d", i+1)); err != nil {
				return err
			}
			if i%4000 == 3999 {
				time.Sleep(100 * time.Millisecond) // 25 pauses: the flood lasts about 2.5 s
			}
		}
		took = time.Since(began)
		return j.SetResult(map[string]int{"steps": j.Args.N})
	})
	stop := start(t, w)
	id := dispatch(t, e, flood{N: 100_000})
	in, _ := bus.NewInspector(e.js, bus.Config{})
	var st *bus.JobStatus
	waitFor(t, 30*time.Second, "the job to succeed", func() bool {
		st, err = in.Job(context.Background(), id)
		return err == nil && st.State == bus.JobSucceeded
	})
	if err := stop(); err != nil { // flushes the last writes
		t.Fatal(err)
	}
	// The server sends the subscription every record before it answers
	// this flush: the channel then holds them all.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	allowed := 1 + int(took/bus.ProgressInterval) + 1 + 1 // first write, one per interval, the last flush, the final record
	got := len(writes)
	t.Logf("100000 Progress calls in %s made %d writes (at most %d allowed)", took.Round(time.Millisecond), got, allowed)
	if got > allowed || got < 2 {
		t.Fatalf("%d record writes for 100000 Progress calls in %s; want 2 to %d", got, took, allowed)
	}
	if st.Progress == nil || st.Progress.Done != 1 || st.Progress.Message != "step 100000" || string(st.Result) != `{"steps":100000}` {
		t.Fatalf("final record: progress %+v result %s", st.Progress, st.Result)
	}
	if err := workers.Progress(context.Background(), 0.5, ""); err == nil {
		t.Error("Progress outside a job's context returned nil")
	}
}

// big is a job whose result is too large.
type big struct{}

func (big) Kind() string { return "big" }

// A result over bus.MaxResult is refused with a clear error, and the job
// can still succeed without it.
func TestResultOverTheLimitIsRefused(t *testing.T) {
	e := newEnv(t, bus.Config{MemoryStorage: true})
	var setErr atomic.Value
	w := workers.New(e.js, workers.Config{})
	workers.Register(w, func(ctx context.Context, j *workers.Job[big]) error {
		setErr.Store(fmt.Sprint(j.SetResult(make([]byte, bus.MaxResult))))
		if err := j.SetResult(make([]byte, bus.MaxResult)); !errors.Is(err, workers.ErrResultTooLarge) {
			return fmt.Errorf("SetResult of a large result: %v", err)
		}
		return j.SetResult("small")
	})
	start(t, w)
	id := dispatch(t, e, big{})
	in, _ := bus.NewInspector(e.js, bus.Config{})
	waitFor(t, 20*time.Second, "the job to succeed with its small result", func() bool {
		st, err := in.Job(context.Background(), id)
		return err == nil && st.State == bus.JobSucceeded && string(st.Result) == `"small"`
	})
	t.Logf("error: %s", setErr.Load())
}

// TestHistoryRetentionAndBoundedStorage is the retention test:
// succeeded jobs are found by ID until the retention ends and not after;
// and with a byte limit the history stays within it under 200,000 jobs,
// each with a tag, keeping the newest.
func TestHistoryRetentionAndBoundedStorage(t *testing.T) {
	t.Run("retention", func(t *testing.T) {
		t.Parallel()
		cfg := bus.Config{MemoryStorage: true, CompletedRetention: 2 * time.Second}
		e := newEnv(t, cfg)
		in, _ := bus.NewInspector(e.js, cfg)
		w := workers.New(e.js, workers.Config{Bus: cfg})
		workers.RegisterDiagnostics(w)
		start(t, w)
		id := dispatch(t, e, workers.Noop{}, bus.Tags("user:7"))
		waitFor(t, 10*time.Second, "the job to succeed", func() bool {
			st, err := in.Job(context.Background(), id)
			return err == nil && st.State == bus.JobSucceeded
		})
		if jobs, err := in.Jobs(context.Background(), bus.JobFilter{Tag: "user:7"}); err != nil || len(jobs) != 1 {
			t.Fatalf("jobs of tag user:7 = %v, %v; want the job", jobs, err)
		}
		waitFor(t, 10*time.Second, "the record to expire", func() bool {
			_, err := in.Job(context.Background(), id)
			return errors.Is(err, bus.ErrJobNotFound)
		})
		if n := natstest.StreamMsgs(t, e.js, bus.HistoryStream); n != 0 {
			t.Fatalf("%s holds %d messages after the retention, want 0", bus.HistoryStream, n)
		}
	})
	t.Run("bounded", func(t *testing.T) {
		t.Parallel()
		const n = 200_000
		const limit = 8 << 20
		cfg := bus.Config{MemoryStorage: true, HistoryMaxBytes: limit}
		e := newEnv(t, cfg)
		in, _ := bus.NewInspector(e.js, cfg)
		w := workers.New(e.js, workers.Config{Bus: cfg, Concurrency: 32})
		workers.RegisterDiagnostics(w)
		start(t, w)
		ctx := context.Background()
		var ids []string
		for sent := 0; sent < n; sent += 10_000 {
			batch := make([]bus.DispatchManyParams, 10_000)
			for i := range batch {
				batch[i] = bus.DispatchManyParams{Args: workers.Noop{}, Opts: []bus.Option{bus.Tags(fmt.Sprintf("batch:%d", sent/10_000))}}
			}
			got, err := e.d.DispatchMany(ctx, batch...)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, got...)
			assertBounded(t, in, limit)
		}
		waitFor(t, 120*time.Second, "every job to run", func() bool {
			assertBounded(t, in, limit)
			return natstest.StreamMsgs(t, e.js, bus.JobsStream) == 0
		})
		// The newest job is found, succeeded; the oldest is gone.
		var st *bus.JobStatus
		waitFor(t, 10*time.Second, "the newest job's record", func() bool {
			var err error
			st, err = in.Job(ctx, ids[n-1])
			return err == nil && st.State == bus.JobSucceeded
		})
		if _, err := in.Job(ctx, ids[0]); !errors.Is(err, bus.ErrJobNotFound) {
			t.Fatalf("the oldest job: %v, want ErrJobNotFound (dropped to stay within %d bytes)", err, limit)
		}
		h, _ := in.History(ctx)
		t.Logf("after %d jobs with a tag each: %s holds %d messages in %d bytes (limit %d)", n, bus.HistoryStream, h.Messages, h.Bytes, limit)
	})
}

// assertBounded fails when the history stream holds more than limit
// bytes. The server stores a record, then removes the oldest ones until
// the stream is within MaxBytes, and lets readers in between two removals
// (its store callback runs unlocked), so one reading can catch it a
// record over the limit mid-way; a stream really over it stays over, so
// the check reads again a few times before it fails.
func assertBounded(t *testing.T, in *bus.Inspector, limit uint64) {
	t.Helper()
	var over []uint64
	for range 5 {
		h, err := in.History(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if h.Bytes <= limit {
			return
		}
		over = append(over, h.Bytes)
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s holds %v bytes in %d readings 10ms apart, over its limit of %d", bus.HistoryStream, over, len(over), limit)
}

// Bulk cancels: by queue, the running jobs are stopped and the waiting
// and delayed ones removed, each recorded as cancelled; by tag, every
// unfinished job of the tag.
func TestCancelByQueueAndByTag(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{MemoryStorage: true})
	ctx := context.Background()
	if err := bus.EnsureQueues(ctx, e.js, bus.Config{}, "default", "other"); err != nil {
		t.Fatal(err)
	}
	in, _ := bus.NewInspector(e.js, bus.Config{})
	w := workers.New(e.js, workers.Config{Queues: []string{"default"}, Concurrency: 2})
	workers.RegisterDiagnostics(w)
	start(t, w)
	var ids []string
	for range 5 {
		ids = append(ids, dispatch(t, e, workers.Sleep{MS: 30_000}))
	}
	ids = append(ids, dispatch(t, e, workers.Noop{}, bus.Delay(time.Hour)))
	waitFor(t, 10*time.Second, "two jobs running", func() bool {
		running, err := in.Running(ctx)
		return err == nil && len(running) == 2
	})
	n, err := in.CancelQueue(ctx, "default")
	if err != nil || n != 6 { // two running, three waiting, one delayed
		t.Fatalf("CancelQueue = %d, %v; want the 6 jobs", n, err)
	}
	waitFor(t, 10*time.Second, "every job of default cancelled", func() bool {
		for _, id := range ids {
			if st, err := in.Job(ctx, id); err != nil || st.State != bus.JobCancelled {
				return false
			}
		}
		return natstest.StreamMsgs(t, e.js, bus.JobsStream) == 0
	})

	var tagged []string
	for range 3 {
		tagged = append(tagged, dispatch(t, e, workers.Noop{}, bus.OnQueue("other"), bus.Tags("batch:9")))
	}
	if n, err := in.CancelTag(ctx, "batch:9"); err != nil || n != 3 {
		t.Fatalf("CancelTag = %d, %v; want 3", n, err)
	}
	for _, id := range tagged {
		if st, err := in.Job(ctx, id); err != nil || st.State != bus.JobCancelled {
			t.Fatalf("job %s of the tag: %+v, %v", id, st, err)
		}
	}
	if n := natstest.StreamMsgs(t, e.js, bus.JobsStream); n != 0 {
		t.Fatalf("JOBS holds %d after the cancels", n)
	}
}

// TestRetryingJobsAreAnsweredFromTheirRecord: a job waiting out a retry's
// backoff is looked up from its record, without asking the workers (no
// request on bus.LocatePrefix, counted as the server delivers them: a
// worker cannot be running an attempt that is not due); and listing the
// retrying jobs leaves out one whose last attempt failed since (dead),
// though its latest record still says retrying.
func TestRetryingJobsAreAnsweredFromTheirRecord(t *testing.T) {
	e := newEnv(t, bus.Config{MemoryStorage: true})
	nc := e.js.Conn()
	var locates atomic.Int64
	sub, err := nc.Subscribe(bus.LocatePrefix+".>", func(*nats.Msg) { locates.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	w := workers.New(e.js, workers.Config{})
	workers.RegisterDiagnostics(w)
	stop := start(t, w)
	defer stop()
	waiting := dispatch(t, e, workers.Fail{Message: "try later"}, bus.Tries(3), bus.Backoff(time.Hour))
	dead := dispatch(t, e, workers.Fail{Message: "no luck"}, bus.Tries(2), bus.Backoff(100*time.Millisecond))
	in, _ := bus.NewInspector(e.js, bus.Config{})
	ctx := context.Background()
	for _, w := range []struct {
		id    string
		state bus.JobState
	}{{waiting, bus.JobRetrying}, {dead, bus.JobDead}} {
		waitFor(t, 30*time.Second, "job "+w.id+" to be "+string(w.state), func() bool {
			st, err := in.Job(ctx, w.id)
			return err == nil && st.State == w.state
		})
	}
	if err := nc.Flush(); err != nil { // every locate sent so far has reached sub
		t.Fatal(err)
	}
	before := locates.Load()
	for range 3 {
		st, err := in.Job(ctx, waiting)
		if err != nil || st.State != bus.JobRetrying || st.Attempt != 1 || st.Error != "try later" || st.NextAttemptAt.IsZero() {
			t.Fatalf("lookup of the retrying job: %+v, %v", st, err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if n := locates.Load() - before; n != 0 {
		t.Errorf("3 lookups of a job waiting out its backoff asked the workers %d times, want 0", n)
	}
	listed, err := in.Jobs(ctx, bus.JobFilter{State: bus.JobRetrying})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, st := range listed {
		ids = append(ids, st.ID)
	}
	if len(ids) != 1 || ids[0] != waiting {
		t.Errorf("retrying jobs listed: %v, want only %s (not %s, dead since)", ids, waiting, dead)
	}
}

// TestADeadJobShowsItsLastAttempt: a job that failed its first attempt
// (a retrying record) and died on its second shows the second: its
// attempt, the worker's tries (the job set none), and neither the first
// attempt's worker nor its start.
func TestADeadJobShowsItsLastAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{MemoryStorage: true})
	w := workers.New(e.js, workers.Config{Tries: 2, Backoff: []time.Duration{time.Second}})
	workers.RegisterDiagnostics(w)
	start(t, w)
	id := dispatch(t, e, workers.Fail{Message: "no luck"})
	in, _ := bus.NewInspector(e.js, bus.Config{})
	ctx := context.Background()
	var first *bus.JobStatus
	waitFor(t, 30*time.Second, "the first attempt's record", func() bool {
		st, err := in.Job(ctx, id)
		if err == nil && st.State == bus.JobRetrying {
			first = st
		}
		return first != nil || err == nil && st.State == bus.JobDead
	})
	var st *bus.JobStatus
	waitFor(t, 30*time.Second, "the job dead", func() bool {
		var err error
		st, err = in.Job(ctx, id)
		return err == nil && st.State == bus.JobDead
	})
	if st.Attempt != 2 || st.Tries != 2 {
		t.Errorf("dead job: attempt %d of %d tries; want 2 of 2", st.Attempt, st.Tries)
	}
	if first == nil || first.StartedAt.IsZero() || first.Tries != 2 {
		t.Fatalf("the retrying job: %+v; want its first attempt's start and the worker's 2 tries", first)
	}
	if !st.StartedAt.IsZero() && !st.StartedAt.After(first.StartedAt) {
		t.Errorf("dead job started at %s, the first attempt's start (%s)", st.StartedAt, first.StartedAt)
	}
}
