package workers_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/proctest"
	"github.com/jetfleet/jetfleet/workers"
)

// batchJob is a job of the batch tests: it fails for good when Fail, and
// waits at the test's barrier when Barrier.
type batchJob struct {
	N       int  `json:"n"`
	Fail    bool `json:"fail,omitempty"`
	Barrier bool `json:"barrier,omitempty"`
}

func (batchJob) Kind() string { return "batch-job" }

// callbackJob is the then, catch or finally job of the batch tests.
type callbackJob struct {
	Name string `json:"name"`
}

func (callbackJob) Kind() string { return "batch-callback" }

// callbackRun is one run of a callback: which one, its job ID and its
// place in JOBS (two stored callbacks would have two sequences).
type callbackRun struct {
	name, id string
	seq      uint64
}

// callbackLog records callback runs and wakes waiters.
type callbackLog struct {
	mu     sync.Mutex
	runs   []callbackRun
	change chan struct{}
}

func newCallbackLog() *callbackLog { return &callbackLog{change: make(chan struct{}, 1)} }

func (c *callbackLog) add(r callbackRun) {
	c.mu.Lock()
	c.runs = append(c.runs, r)
	c.mu.Unlock()
	select {
	case c.change <- struct{}{}:
	default:
	}
}

// stored counts the distinct stored callback jobs named name of batch
// (by their JOBS sequence): a redelivery of one is not a second one.
func (c *callbackLog) stored(name, batch string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	seqs := map[uint64]bool{}
	for _, r := range c.runs {
		if r.name == name && (batch == "" || r.id == batch+"-"+name) {
			seqs[r.seq] = true
		}
	}
	return len(seqs)
}

// wait waits until cond holds, woken by each callback run.
func (c *callbackLog) wait(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(timeout)
	for !cond() {
		select {
		case <-c.change:
		case <-deadline:
			t.Fatalf("timed out after %s waiting for %s; callbacks run: %+v", timeout, what, c.snapshot())
		}
	}
}

func (c *callbackLog) snapshot() []callbackRun {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.runs)
}

// batchWorker is a worker of queue running batchJob (through run, when
// set) and callbackJob into cbs.
func batchWorker(e *env, queue string, concurrency int, cbs *callbackLog, run func(context.Context, *workers.Job[batchJob]) error) *workers.Worker {
	w := workers.New(e.js, workers.Config{Queues: []string{queue}, Concurrency: concurrency, Tries: 1})
	workers.Register(w, func(ctx context.Context, j *workers.Job[batchJob]) error {
		if run != nil {
			return run(ctx, j)
		}
		if j.Args.Fail {
			return workers.Permanent(fmt.Errorf("job %d fails on purpose", j.Args.N))
		}
		return nil
	})
	workers.Register(w, func(_ context.Context, j *workers.Job[callbackJob]) error {
		cbs.add(callbackRun{name: j.Args.Name, id: j.ID, seq: j.Seq})
		return nil
	})
	return w
}

func batchOf(n int, fail ...int) []bus.DispatchManyParams {
	jobs := make([]bus.DispatchManyParams, n)
	for i := range jobs {
		jobs[i] = bus.DispatchManyParams{Args: batchJob{N: i, Fail: slices.Contains(fail, i)}}
	}
	return jobs
}

func allCallbacks() []bus.BatchOption {
	return []bus.BatchOption{
		bus.Then(callbackJob{Name: "then"}), bus.Catch(callbackJob{Name: "catch"}), bus.Finally(callbackJob{Name: "finally"}),
	}
}

func batchStatus(t *testing.T, e *env, id string) bus.BatchStatus {
	t.Helper()
	in, err := bus.NewInspector(e.js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := in.Batch(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestBatchCallbacks: a batch that succeeds runs then and finally once and
// catch never; one with failures runs catch and finally once and then
// never; with AllowFailures, then and finally and no catch. The progress
// adds up.
func TestBatchCallbacks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	cbs := newCallbackLog()
	start(t, batchWorker(e, "default", 4, cbs, nil))
	ctx := context.Background()
	for _, tc := range []struct {
		name                string
		fail                []int
		opts                []bus.BatchOption
		then, catch, finish int
		state               bus.BatchState
	}{
		{"all-succeed", nil, nil, 1, 0, 1, bus.BatchSucceeded},
		{"two-fail", []int{3, 7}, nil, 0, 1, 1, bus.BatchFailed},
		{"allow-failures", []int{5}, []bus.BatchOption{bus.AllowFailures()}, 1, 0, 1, bus.BatchFailed},
	} {
		b, err := e.d.Batch(ctx, batchOf(20, tc.fail...), append(allCallbacks(), tc.opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.JobIDs) != 20 || b.JobIDs[3] != b.ID+"-3" {
			t.Fatalf("%s: job IDs %v", tc.name, b.JobIDs)
		}
		cbs.wait(t, 30*time.Second, tc.name+": its callbacks", func() bool {
			return cbs.stored("finally", b.ID) == 1 && cbs.stored("catch", b.ID) == tc.catch && cbs.stored("then", b.ID) == tc.then
		})
		waitIdle(t, e, "default") // nothing more to run: no late callback
		st := batchStatus(t, e, b.ID)
		if st.State != tc.state || st.Total != 20 || st.Pending != 0 || st.Failed != len(tc.fail) || st.Succeeded != 20-len(tc.fail) {
			t.Fatalf("%s: status %+v", tc.name, st)
		}
		for name, want := range map[string]int{"then": tc.then, "catch": tc.catch, "finally": tc.finish} {
			if got := cbs.stored(name, b.ID); got != want {
				t.Fatalf("%s: %s stored %d times, want %d: %+v", tc.name, name, got, want, cbs.snapshot())
			}
			for _, cb := range st.Callbacks {
				if cb.Name == name && cb.Released != (want == 1) {
					t.Fatalf("%s: status says %s released=%v", tc.name, name, cb.Released)
				}
			}
		}
	}
}

// TestBatchAtomicDispatch: a batch whose dispatch fails stores nothing; a
// batch over one atomic publish (2,500 jobs) is stored and finishes.
func TestBatchAtomicDispatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	ctx := context.Background()
	dispatch(t, e, batchJob{N: -1}, bus.JobID("taken"))
	jobs := batchOf(500)
	jobs[499].Opts = []bus.Option{bus.JobID("taken")} // stored already: the whole batch is refused
	_, err := e.d.Batch(ctx, jobs, bus.BatchID("refused"), bus.Then(callbackJob{Name: "then"}))
	if !errors.Is(err, bus.ErrInvalid) {
		t.Fatalf("Batch with a job ID stored already = %v, want ErrInvalid", err)
	}
	if n := jobsStored(t, e); n != 1 {
		t.Fatalf("JOBS holds %d messages after the refused batch, want the 1 job from before", n)
	}
	in, _ := bus.NewInspector(e.js, bus.Config{})
	if _, err := in.Batch(ctx, "refused"); !errors.Is(err, bus.ErrUnknownBatch) {
		t.Fatalf("the refused batch exists: %v", err)
	}

	cbs := newCallbackLog()
	b, err := e.d.Batch(ctx, batchOf(2500), allCallbacks()...)
	if err != nil {
		t.Fatal(err)
	}
	if st := batchStatus(t, e, b.ID); st.Total != 2500 || st.State != bus.BatchRunning || st.Pending != 2500 {
		t.Fatalf("before any worker: %+v", st)
	}
	start(t, batchWorker(e, "default", 8, cbs, nil))
	// then and finally are released together and may run in either order.
	cbs.wait(t, 60*time.Second, "then and finally", func() bool {
		return cbs.stored("then", b.ID) == 1 && cbs.stored("finally", b.ID) == 1
	})
	if st := batchStatus(t, e, b.ID); st.State != bus.BatchSucceeded || st.Succeeded != 2500 || cbs.stored("then", b.ID) != 1 || cbs.stored("catch", b.ID) != 0 {
		t.Fatalf("after: %+v, callbacks %+v", st, cbs.snapshot())
	}
	if _, err := e.d.Batch(ctx, batchOf(1), bus.BatchID(b.ID)); !errors.Is(err, bus.ErrInvalid) {
		t.Fatalf("a second batch with the same ID = %v, want ErrInvalid", err)
	}
}

// TestBatchCancelAndAdd: jobs added to a running batch are waited for; a
// cancelled batch's pending jobs never run, and only finally runs.
func TestBatchCancelAndAdd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	ctx := context.Background()
	cbs := newCallbackLog()
	release := make(chan struct{})
	var ran sync.Map
	w := batchWorker(e, "default", 2, cbs, func(ctx context.Context, j *workers.Job[batchJob]) error {
		ran.Store(j.ID, true)
		if j.Args.Barrier {
			<-release
		}
		return nil
	})
	start(t, w)

	// Added while running: the batch waits for them.
	jobs := batchOf(3)
	jobs[0].Args = batchJob{N: 0, Barrier: true}
	b, err := e.d.Batch(ctx, jobs, allCallbacks()...)
	if err != nil {
		t.Fatal(err)
	}
	added, err := e.d.AddToBatch(ctx, b.ID, batchOf(5)...)
	if err != nil || len(added) != 5 {
		t.Fatalf("AddToBatch = %v, %v", added, err)
	}
	close(release)
	cbs.wait(t, 30*time.Second, "finally", func() bool { return cbs.stored("finally", b.ID) == 1 })
	for _, id := range added {
		if _, ok := ran.Load(id); !ok {
			t.Fatalf("added job %s did not run before finally", id)
		}
	}
	if st := batchStatus(t, e, b.ID); st.Total != 8 || st.Succeeded != 8 || st.State != bus.BatchSucceeded {
		t.Fatalf("status %+v", st)
	}
	if _, err := e.d.AddToBatch(ctx, b.ID, batchOf(1)...); !errors.Is(err, bus.ErrBatchFinished) {
		t.Fatalf("AddToBatch to a finished batch = %v", err)
	}

	// Cancelled while its queue is paused: no job runs.
	in, _ := bus.NewInspector(e.js, bus.Config{})
	if err := bus.EnsureQueues(ctx, e.js, bus.Config{}, "slow"); err != nil {
		t.Fatal(err)
	}
	if err := in.Pause(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
	slow := batchWorker(e, "slow", 2, cbs, func(_ context.Context, j *workers.Job[batchJob]) error {
		ran.Store(j.ID, true)
		return nil
	})
	start(t, slow)
	jobs = batchOf(50)
	for i := range jobs {
		jobs[i].Opts = []bus.Option{bus.OnQueue("slow")}
	}
	opts := []bus.BatchOption{
		bus.Then(callbackJob{Name: "then"}, bus.OnQueue("slow")), bus.Finally(callbackJob{Name: "finally"}, bus.OnQueue("slow")),
	}
	c, err := e.d.Batch(ctx, jobs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.CancelBatch(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if st := batchStatus(t, e, c.ID); st.State != bus.BatchCancelling || !st.Cancelled {
		t.Fatalf("after cancel: %+v", st)
	}
	if err := in.Resume(ctx, "slow"); err != nil {
		t.Fatal(err)
	}
	cbs.wait(t, 30*time.Second, "finally of the cancelled batch", func() bool { return cbs.stored("finally", c.ID) == 1 })
	for _, id := range c.JobIDs {
		if _, ok := ran.Load(id); ok {
			t.Fatalf("job %s of the cancelled batch ran", id)
		}
	}
	st := batchStatus(t, e, c.ID)
	if st.State != bus.BatchCancelled || st.Skipped != 50 || cbs.stored("then", c.ID) != 0 {
		t.Fatalf("cancelled batch: %+v", st)
	}
	if err := in.CancelBatch(ctx, c.ID); !errors.Is(err, bus.ErrBatchFinished) {
		t.Fatalf("cancelling a finished batch = %v", err)
	}
}

func jobsStored(t *testing.T, e *env) uint64 {
	t.Helper()
	s, err := e.js.Stream(context.Background(), bus.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// waitIdle waits until queue has no job ready, running or unacknowledged.
func waitIdle(t *testing.T, e *env, queue string) {
	t.Helper()
	waitFor(t, 30*time.Second, queue+" idle", func() bool {
		info := consumerInfo(t, e.js, queue)
		return info.NumPending == 0 && info.NumAckPending == 0
	})
}

// TestBatchLastTwoAtOnce is the race: two workers (two
// connections, each its own queue) finish a batch's last two jobs at the
// same instant, held at a barrier until both arrive, 200 times. Each
// batch's then and finally are stored and run exactly once.
func TestBatchLastTwoAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	ctx := context.Background()
	cbs := newCallbackLog()
	var bar barrier
	hold := func(_ context.Context, j *workers.Job[batchJob]) error {
		id, _, _ := bus.BatchOf(j.Header)
		bar.arrive(id)
		return nil
	}
	for _, q := range []string{"race-a", "race-b"} {
		_, js := natstest.Connect(t, e.url) // each worker on its own connection
		start(t, batchWorker(&env{js: js, d: e.d}, q, 1, cbs, hold))
	}
	const rounds = 200
	ids := make([]string, rounds)
	for i := range rounds {
		jobs := []bus.DispatchManyParams{
			{Args: batchJob{N: 0}, Opts: []bus.Option{bus.OnQueue("race-a")}},
			{Args: batchJob{N: 1}, Opts: []bus.Option{bus.OnQueue("race-b")}},
		}
		b, err := e.d.Batch(ctx, jobs, bus.Then(callbackJob{Name: "then"}, bus.OnQueue("race-a")), bus.Finally(callbackJob{Name: "finally"}, bus.OnQueue("race-b")))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = b.ID
		cbs.wait(t, 30*time.Second, fmt.Sprintf("round %d's callbacks", i), func() bool {
			return cbs.stored("then", b.ID) >= 1 && cbs.stored("finally", b.ID) >= 1
		})
	}
	waitIdle(t, e, "race-a")
	waitIdle(t, e, "race-b")
	for i, id := range ids {
		if th, fi := cbs.stored("then", id), cbs.stored("finally", id); th != 1 || fi != 1 {
			t.Fatalf("round %d: then stored %d times, finally %d", i, th, fi)
		}
	}
	within := bar.within(time.Millisecond)
	t.Logf("%d rounds: callbacks once each; the two last jobs left the barrier within 1 ms of each other in %d rounds", rounds, within)
	if within < rounds/2 {
		t.Fatalf("the last two jobs finished within 1 ms of each other in only %d of %d rounds: the race was not forced", within, rounds)
	}
}

// barrier holds the two jobs of a batch until both have arrived, and
// notes when each left.
type barrier struct {
	mu    sync.Mutex
	gates map[string]*gate
}

type gate struct {
	n      int
	open   chan struct{}
	left   []time.Time
	leftMu sync.Mutex
}

func (b *barrier) arrive(id string) {
	b.mu.Lock()
	if b.gates == nil {
		b.gates = map[string]*gate{}
	}
	g := b.gates[id]
	if g == nil {
		g = &gate{open: make(chan struct{})}
		b.gates[id] = g
	}
	g.n++
	if g.n == 2 {
		close(g.open)
	}
	b.mu.Unlock()
	<-g.open
	g.leftMu.Lock()
	g.left = append(g.left, time.Now())
	g.leftMu.Unlock()
}

// within counts the batches whose two jobs left the barrier within d.
func (b *barrier) within(d time.Duration) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, g := range b.gates {
		g.leftMu.Lock()
		if len(g.left) == 2 && absDur(g.left[0].Sub(g.left[1])) < d {
			n++
		}
		g.leftMu.Unlock()
	}
	return n
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// TestBatchKilledWorkers is the batch test with real worker
// processes: a batch of 5,000 jobs over 3 worker processes, one killed -9
// every 2 s (and started again): then and finally stored exactly once,
// catch never, the progress ends at 5,000 succeeded, 0 pending, 0 failed.
// Then again with 10 jobs that always fail: catch and finally once, then
// never, 4,990 succeeded and 10 failed.
func TestBatchKilledWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills worker processes")
	}
	for _, failing := range []int{0, 10} {
		t.Run(fmt.Sprintf("failing-%d", failing), func(t *testing.T) { killedWorkersRun(t, failing) })
	}
}

func killedWorkersRun(t *testing.T, failing int) {
	ctx := context.Background()
	cfg := bus.Config{AckWait: 2 * time.Second}
	e := newEnv(t, cfg)
	if err := bus.EnsureQueues(ctx, e.js, cfg, "kill"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "CBLOG", Subjects: []string{"cblog.>"}}); err != nil {
		t.Fatal(err)
	}
	nc, _ := natstest.Connect(t, e.url)
	finally := make(chan struct{}, 1)
	if _, err := nc.Subscribe("cblog.finally", func(*nats.Msg) { finally <- struct{}{} }); err != nil {
		t.Fatal(err)
	}

	const total = 5000
	jobs := make([]bus.DispatchManyParams, total)
	for i := range jobs {
		jobs[i] = bus.DispatchManyParams{Args: batchJob{N: i}, Opts: []bus.Option{bus.OnQueue("kill"), bus.Tries(20)}}
	}
	for i := range failing { // spread over the batch; each uses its 3 tries
		jobs[i*total/failing+7] = bus.DispatchManyParams{Args: batchJob{N: i, Fail: true}, Opts: []bus.Option{bus.OnQueue("kill"), bus.Tries(3), bus.Backoff(50 * time.Millisecond)}}
	}
	cb := func(name string) bus.BatchOption {
		args, opts := callbackJob{Name: name}, []bus.Option{bus.OnQueue("kill"), bus.Tries(20)}
		switch name {
		case "then":
			return bus.Then(args, opts...)
		case "catch":
			return bus.Catch(args, opts...)
		}
		return bus.Finally(args, opts...)
	}
	b, err := e.d.Batch(ctx, jobs, cb("then"), cb("catch"), cb("finally"))
	if err != nil {
		t.Fatal(err)
	}

	env := proctest.Env("BATCH_CHILD_NATS="+e.url, "BATCH_CHILD_QUEUE=kill")
	procs := make([]*proctest.Proc, 3)
	startChild := func(i int) {
		procs[i] = proctest.Start(t, os.Args[0], t.TempDir(), env, "-test.run=^TestBatchWorkerChild$", "-test.v")
	}
	for i := range procs {
		startChild(i)
	}
	kills := 0
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	deadline := time.After(3 * time.Minute)
wait:
	for {
		select {
		case <-finally:
			break wait
		case <-tick.C:
			i := kills % len(procs)
			_ = procs[i].Cmd.Process.Signal(syscall.SIGKILL)
			<-procs[i].Done
			kills++
			startChild(i)
		case <-deadline:
			t.Fatalf("finally did not run within 3 minutes (%d kills): %+v", kills, batchStatus(t, e, b.ID))
		}
	}
	waitIdle(t, e, "kill") // every job and callback settled: nothing more can run
	st := batchStatus(t, e, b.ID)
	counts := callbackCounts(t, e, b.ID)
	t.Logf("%d jobs, %d always failing, %d kills -9: %+v; callbacks stored %v", total, failing, kills,
		fmt.Sprintf("%d/%d/%d/%d (total/pending/succeeded/failed)", st.Total, st.Pending, st.Succeeded, st.Failed), counts)
	if kills < 2 {
		t.Fatalf("only %d kills happened before the batch finished: the test proves little", kills)
	}
	wantThen, wantCatch := 1, 0
	if failing > 0 {
		wantThen, wantCatch = 0, 1
	}
	if counts["then"] != wantThen || counts["catch"] != wantCatch || counts["finally"] != 1 {
		t.Fatalf("callbacks stored %v, want then %d, catch %d, finally 1", counts, wantThen, wantCatch)
	}
	if st.Total != total || st.Pending != 0 || st.Failed != failing || st.Succeeded != total-failing || st.Skipped != 0 {
		t.Fatalf("progress %+v, want %d/0/%d/%d", st, total, total-failing, failing)
	}
}

// callbackCounts counts, per callback, the distinct stored callback jobs
// of batch id that ran (by JOBS sequence), from what the child workers
// logged to CBLOG.
func callbackCounts(t *testing.T, e *env, id string) map[string]int {
	t.Helper()
	ctx := context.Background()
	s, err := e.js.Stream(ctx, "CBLOG")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seqs := map[string]map[string]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(m.Subject, "cblog.")
		jobID, jobsSeq, _ := strings.Cut(string(m.Data), " ")
		if jobID != id+"-"+name {
			t.Fatalf("callback %s ran with job ID %s", name, jobID)
		}
		if seqs[name] == nil {
			seqs[name] = map[string]bool{}
		}
		seqs[name][jobsSeq] = true
	}
	out := map[string]int{}
	for name, s := range seqs {
		out[name] = len(s)
	}
	return out
}

// TestBatchWorkerChild is a worker process of TestBatchKilledWorkers: its
// batch jobs take 8 ms (the failing ones fail), its callbacks log their
// run to CBLOG before they return. It does nothing in a normal run.
func TestBatchWorkerChild(t *testing.T) {
	url := os.Getenv("BATCH_CHILD_NATS")
	if url == "" {
		t.Skip("only run by TestBatchKilledWorkers")
	}
	_, js := natstest.Connect(t, url)
	w := workers.New(js, workers.Config{Queues: []string{os.Getenv("BATCH_CHILD_QUEUE")}, Concurrency: 2,
		Bus: bus.Config{AckWait: 2 * time.Second}, Grace: time.Second})
	workers.Register(w, func(ctx context.Context, j *workers.Job[batchJob]) error {
		if j.Args.Fail {
			return fmt.Errorf("job %d always fails", j.Args.N)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(8 * time.Millisecond):
			return nil
		}
	})
	workers.Register(w, func(ctx context.Context, j *workers.Job[callbackJob]) error {
		_, err := js.Publish(ctx, "cblog."+j.Args.Name, []byte(j.ID+" "+strconv.FormatUint(j.Seq, 10)))
		return err
	})
	if err := w.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// chainRuns notes when each job of the chain tests ran.
type chainRuns struct {
	mu sync.Mutex
	at map[int]time.Time
}

func (c *chainRuns) ran(n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.at[n]
	return ok
}

// TestChainStopsAtFailure is the chain test: a chain of 3 whose
// second step fails for good: the third never runs, catch runs once (and
// finally once, then never).
func TestChainStopsAtFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	ctx := context.Background()
	cbs := newCallbackLog()
	runs := &chainRuns{at: map[int]time.Time{}}
	start(t, batchWorker(e, "default", 4, cbs, func(_ context.Context, j *workers.Job[batchJob]) error {
		runs.mu.Lock()
		runs.at[j.Args.N] = time.Now()
		runs.mu.Unlock()
		if j.Args.Fail {
			return workers.Permanent(errors.New("step 2 fails for good"))
		}
		return nil
	}))
	id, err := e.d.Chain(ctx, bus.Steps(batchJob{N: 1}, batchJob{N: 2, Fail: true}, batchJob{N: 3}), allCallbacks()...)
	if err != nil {
		t.Fatal(err)
	}
	cbs.wait(t, 30*time.Second, "catch and finally", func() bool {
		return cbs.stored("catch", id) == 1 && cbs.stored("finally", id) == 1
	})
	waitIdle(t, e, "default")
	if !runs.ran(1) || !runs.ran(2) || runs.ran(3) {
		t.Fatalf("ran steps %v; want 1 and 2, never 3", runs.at)
	}
	if th, ca, fi := cbs.stored("then", id), cbs.stored("catch", id), cbs.stored("finally", id); th != 0 || ca != 1 || fi != 1 {
		t.Fatalf("callbacks: then %d, catch %d, finally %d", th, ca, fi)
	}
	in, _ := bus.NewInspector(e.js, bus.Config{})
	steps, err := in.Chain(ctx, id)
	if err != nil || len(steps) != 2 || steps[0].State != bus.BatchSucceeded || steps[1].State != bus.BatchFailed || steps[1].Steps != 3 {
		t.Fatalf("Chain = %+v, %v", steps, err)
	}
	// Step 1 released step 2 and held the chain's catch and finally for a
	// failure; step 2 failed and released them.
	wantCallbacks(t, steps[0], "then next step released", "catch batch-callback", "finally batch-callback")
	wantCallbacks(t, steps[1], "then next step", "catch batch-callback released", "finally batch-callback released")
}

// wantCallbacks checks a batch's callbacks, each written as "<name>
// <kind>" and " released" when it was dispatched, in order.
func wantCallbacks(t *testing.T, st bus.BatchStatus, want ...string) {
	t.Helper()
	var got []string
	for _, cb := range st.Callbacks {
		c := cb.Name + " " + cb.Kind
		if cb.Released {
			c += " released"
		}
		got = append(got, c)
	}
	if !slices.Equal(got, want) {
		t.Errorf("callbacks of %s: %q, want %q", st.ID, got, want)
	}
}

// TestChainWithBatchStep: a chain whose middle step is a batch of 5 jobs:
// the third step starts only after every job of the batch, which starts
// only after the first step; then and finally run once.
func TestChainWithBatchStep(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	ctx := context.Background()
	cbs := newCallbackLog()
	runs := &chainRuns{at: map[int]time.Time{}}
	start(t, batchWorker(e, "default", 8, cbs, func(_ context.Context, j *workers.Job[batchJob]) error {
		time.Sleep(time.Duration(j.Args.N%3) * 5 * time.Millisecond) // jobs of uneven length
		runs.mu.Lock()
		runs.at[j.Args.N] = time.Now()
		runs.mu.Unlock()
		return nil
	}))
	middle := make([]bus.DispatchManyParams, 5)
	for i := range middle {
		middle[i] = bus.DispatchManyParams{Args: batchJob{N: 10 + i}}
	}
	steps := []bus.Step{bus.StepJob(batchJob{N: 1}), bus.StepBatch(middle), bus.StepJob(batchJob{N: 2})}
	id, err := e.d.Chain(ctx, steps, bus.Then(callbackJob{Name: "then"}), bus.Finally(callbackJob{Name: "finally"}))
	if err != nil {
		t.Fatal(err)
	}
	cbs.wait(t, 30*time.Second, "then and finally", func() bool {
		return cbs.stored("then", id) == 1 && cbs.stored("finally", id) == 1
	})
	waitIdle(t, e, "default")
	runs.mu.Lock()
	defer runs.mu.Unlock()
	for i := 10; i < 15; i++ {
		if !runs.at[1].Before(runs.at[i]) || !runs.at[i].Before(runs.at[2]) {
			t.Fatalf("batch job %d ran at %v: not after step 1 (%v) and before step 3 (%v)", i, runs.at[i], runs.at[1], runs.at[2])
		}
	}
	if th, fi := cbs.stored("then", id), cbs.stored("finally", id); th != 1 || fi != 1 {
		t.Fatalf("then %d, finally %d", th, fi)
	}
	in, _ := bus.NewInspector(e.js, bus.Config{})
	chain, err := in.Chain(ctx, id)
	if err != nil || len(chain) != 3 {
		t.Fatalf("Chain = %+v, %v", chain, err)
	}
	for k := 1; k < len(chain); k++ { // a step is dated when it is dispatched: once the one before finished
		if chain[k].CreatedAt.Before(chain[k-1].FinishedAt) {
			t.Errorf("step %d created at %s, before step %d finished at %s", k+1, chain[k].CreatedAt, k, chain[k-1].FinishedAt)
		}
	}
	// The last step released the chain's then and finally; each step
	// would have released the chain's finally had it failed.
	wantCallbacks(t, chain[1], "then next step released", "finally batch-callback")
	wantCallbacks(t, chain[2], "then batch-callback released", "finally batch-callback released")
}

// TestACancelledBatchLeavesATraceOfEachJob: a job skipped because its
// batch is cancelled is found by its ID, as cancelled without running;
// and a dead letter of that batch is not retried, since a worker would
// skip it: the retry is refused, by ID and in a retry of all, and the
// dead letter stays.
func TestACancelledBatchLeavesATraceOfEachJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	ctx := context.Background()
	in, _ := bus.NewInspector(e.js, bus.Config{})
	if err := bus.EnsureQueues(ctx, e.js, bus.Config{}, "held"); err != nil {
		t.Fatal(err)
	}
	if err := in.Pause(ctx, "held"); err != nil {
		t.Fatal(err)
	}
	cbs := newCallbackLog()
	start(t, batchWorker(e, "default", 1, cbs, nil))
	start(t, batchWorker(e, "held", 1, cbs, nil))
	jobs := batchOf(2, 0) // job 0 fails on default; job 1 waits on the paused queue
	jobs[1].Opts = []bus.Option{bus.OnQueue("held")}
	b, err := e.d.Batch(ctx, jobs, bus.Finally(callbackJob{Name: "finally"}))
	if err != nil {
		t.Fatal(err)
	}
	failed, skipped := b.JobIDs[0], b.JobIDs[1]
	proctest.Eventually(t, 30*time.Second, "job 0 dead-lettered", func() error {
		_, err := in.FailedJob(ctx, failed)
		return err
	})
	if err := in.CancelBatch(ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if err := in.Resume(ctx, "held"); err != nil {
		t.Fatal(err)
	}
	cbs.wait(t, 30*time.Second, "finally", func() bool { return cbs.stored("finally", b.ID) == 1 })

	proctest.Eventually(t, 10*time.Second, "the skipped job's record", func() error {
		st, err := in.Job(ctx, skipped)
		if err != nil {
			return err
		}
		if st.State != bus.JobCancelled || !strings.Contains(st.Note, "batch "+b.ID+" is cancelled") || !st.StartedAt.IsZero() {
			return fmt.Errorf("skipped job: state %s, note %q, started %v", st.State, st.Note, st.StartedAt)
		}
		return nil
	})

	if n, err := in.Retry(ctx, failed); n != 0 || !errors.Is(err, bus.ErrBatchCancelled) {
		t.Fatalf("Retry of a cancelled batch's dead letter = %d, %v; want 0, ErrBatchCancelled", n, err)
	}
	if n, err := in.RetryAll(ctx, bus.FailedFilter{}); n != 0 || !errors.Is(err, bus.ErrBatchCancelled) || !strings.Contains(err.Error(), failed) {
		t.Fatalf("RetryAll = %d, %v; want 0 and ErrBatchCancelled naming %s", n, err, failed)
	}
	if _, err := in.FailedJob(ctx, failed); err != nil {
		t.Fatalf("the refused retry took the dead letter: %v", err)
	}
}

// TestACancelledJobStillLetsItsBatchFinish: jobs of a batch cancelled one
// by one (while waiting, while running) or with their queue count as
// skipped: the batch finishes, Finally runs, Then and Catch do not (Then
// does with AllowFailures).
func TestACancelledJobStillLetsItsBatchFinish(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	ctx := context.Background()
	in, err := bus.NewInspector(e.js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.EnsureQueues(ctx, e.js, bus.Config{}, "default", "parked"); err != nil {
		t.Fatal(err)
	}
	jobs := batchOf(4)
	jobs[2].Args = batchJob{N: 2, Barrier: true}       // cancelled while it runs
	jobs[3].Opts = []bus.Option{bus.OnQueue("parked")} // no worker: cancelled with its queue
	b, err := e.d.Batch(ctx, jobs, allCallbacks()...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Cancel(ctx, b.JobIDs[1]); err != nil { // before any worker runs
		t.Fatal(err)
	}
	allow, err := e.d.Batch(ctx, batchOf(2), append(allCallbacks(), bus.AllowFailures())...)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Cancel(ctx, allow.JobIDs[1]); err != nil {
		t.Fatal(err)
	}

	cbs := newCallbackLog()
	running := make(chan struct{})
	var ran sync.Map
	start(t, batchWorker(e, "default", 2, cbs, func(ctx context.Context, j *workers.Job[batchJob]) error {
		ran.Store(j.Args.N, true)
		if j.Args.Barrier {
			close(running)
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}))
	<-running
	if _, err := in.Cancel(ctx, b.JobIDs[2]); err != nil {
		t.Fatal(err)
	}
	if n, err := in.CancelQueue(ctx, "parked"); err != nil || n != 1 {
		t.Fatalf("CancelQueue(parked) = %d, %v; want 1", n, err)
	}

	cbs.wait(t, 30*time.Second, "finally", func() bool { return cbs.stored("finally", b.ID) == 1 })
	waitIdle(t, e, "default")
	if _, ok := ran.Load(1); ok {
		t.Error("the job cancelled while it waited ran")
	}
	st := batchStatus(t, e, b.ID)
	if st.State != bus.BatchCancelled || st.Succeeded != 1 || st.Skipped != 3 || st.Pending != 0 || st.Cancelled {
		t.Fatalf("batch with three cancelled jobs: %+v; want cancelled (not as a batch), 1 succeeded, 3 skipped", st)
	}
	if then, catch := cbs.stored("then", b.ID), cbs.stored("catch", b.ID); then != 0 || catch != 0 {
		t.Fatalf("then ran %d times, catch %d; want neither", then, catch)
	}
	wantCallbacks(t, st, "then batch-callback", "catch batch-callback", "finally batch-callback released")

	// With AllowFailures a cancelled job is one more that finished: then runs.
	cbs.wait(t, 30*time.Second, "then and finally with AllowFailures", func() bool {
		return cbs.stored("then", allow.ID) == 1 && cbs.stored("finally", allow.ID) == 1
	})
	if st := batchStatus(t, e, allow.ID); st.Succeeded != 1 || st.Skipped != 1 || cbs.stored("catch", allow.ID) != 0 {
		t.Fatalf("batch with AllowFailures and a cancelled job: %+v, catch ran %d times", st, cbs.stored("catch", allow.ID))
	}
}

// TestAJobClaimingAPlaceOutsideItsBatchIsSettledWithoutARecord: jobs
// published raw with Jetfleet-Batch naming a running batch and an index
// outside it run once and are settled (not delivered again for ever),
// and the batch's own jobs are recorded and finish it as usual.
func TestAJobClaimingAPlaceOutsideItsBatchIsSettledWithoutARecord(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	ctx := context.Background()
	cbs := newCallbackLog()
	release := make(chan struct{})
	var forgedRuns atomic.Int64
	start(t, batchWorker(e, "default", 4, cbs, func(ctx context.Context, j *workers.Job[batchJob]) error {
		if j.Args.N >= 100 {
			forgedRuns.Add(1)
		}
		if j.Args.Barrier {
			<-release
		}
		return nil
	}))
	jobs := batchOf(3)
	jobs[0].Args = batchJob{N: 0, Barrier: true} // keeps the batch running
	b, err := e.d.Batch(ctx, jobs, allCallbacks()...)
	if err != nil {
		t.Fatal(err)
	}
	for i, index := range []string{"4096", "999999", "4194303"} {
		msg := nats.NewMsg(fmt.Sprintf("jobs.default.batch-job.forged-%d", i))
		msg.Header.Set(bus.HeaderBatch, b.ID)
		msg.Header.Set(bus.HeaderBatchIndex, index)
		msg.Data = fmt.Appendf(nil, `{"n":%d}`, 100+i)
		if _, err := e.js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "the forged jobs settled, the batch's first job still running", func() bool {
		info := consumerInfo(t, e.js, "default")
		return info.NumPending == 0 && info.NumAckPending == 1
	})
	close(release)
	cbs.wait(t, 30*time.Second, "finally", func() bool { return cbs.stored("finally", b.ID) == 1 })
	if st := batchStatus(t, e, b.ID); st.Total != 3 || st.Succeeded != 3 || st.State != bus.BatchSucceeded || cbs.stored("then", b.ID) != 1 {
		t.Fatalf("batch after forged jobs: %+v, then ran %d times", st, cbs.stored("then", b.ID))
	}
	if n := forgedRuns.Load(); n != 3 {
		t.Errorf("forged jobs ran %d times, want 3 (once each)", n)
	}
}
