package workers_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/workers"
)

// record is a test job that notes its run in a recorder.
type record struct {
	Queue string `json:"queue"`
	N     int    `json:"n"`
}

func (record) Kind() string { return "record" }

// recorder collects runs in order, safe for concurrent handlers.
type recorder struct {
	mu   sync.Mutex
	runs []run
}

type run struct {
	id, queue string
	n         int
	attempt   int
	at        time.Time
}

func (r *recorder) add(j *bus.Job, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runs = append(r.runs, run{id: j.ID, queue: j.Queue, n: n, attempt: j.Attempt, at: time.Now()})
}

func (r *recorder) snapshot() []run {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]run(nil), r.runs...)
}

// env is a server, a JetStream context and a dispatcher for one test.
type env struct {
	js  jetstream.JetStream
	d   *bus.Dispatcher
	url string
}

func newEnv(t *testing.T, cfg bus.Config) *env {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	if err := bus.Provision(context.Background(), js, cfg); err != nil {
		t.Fatal(err)
	}
	d, err := bus.NewDispatcher(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &env{js: js, d: d, url: srv.ClientURL()}
}

// start runs w until the test ends or the returned stop is called; stop
// returns Run's error.
func start(t testing.TB, w *workers.Worker) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				err = errors.New("Run did not return within 30s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// waitFor polls cond every 20ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(timeout); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

func dispatch(t *testing.T, e *env, args bus.Args, opts ...bus.Option) string {
	t.Helper()
	id, err := e.d.Dispatch(context.Background(), args, opts...)
	if err != nil {
		t.Fatalf("dispatch: %v", err)
	}
	return id
}

// consumerInfo is the server's current state of queue's consumer.
func consumerInfo(t *testing.T, js jetstream.JetStream, queue string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx := context.Background()
	c, err := js.Consumer(ctx, bus.JobsStream, bus.ConsumerName(queue))
	if err != nil {
		t.Fatalf("consumer of %s: %v", queue, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("consumer of %s: %v", queue, err)
	}
	return info
}

// deadLetters returns every message in DLQ, oldest first.
func deadLetters(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, bus.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := s.Info(ctx)
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func TestStrictPriority(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	for i := range 100 {
		dispatch(t, e, record{Queue: "default", N: i}, bus.OnQueue("default"))
	}
	rec := &recorder{}
	first := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	w := workers.New(e.js, workers.Config{Queues: []string{"high", "default"}, Concurrency: 1})
	workers.Register(w, func(ctx context.Context, j *workers.Job[record]) error {
		rec.add(j.Job, j.Args.N)
		once.Do(func() { close(first); <-release })
		return nil
	})
	start(t, w)
	<-first // a default job is running and holds the only slot
	for i := range 10 {
		dispatch(t, e, record{Queue: "high", N: i}, bus.OnQueue("high"))
	}
	close(release)
	waitFor(t, 20*time.Second, "all 110 jobs", func() bool { return len(rec.snapshot()) == 110 })
	runs := rec.snapshot()
	if runs[0].queue != "default" {
		t.Fatalf("first run from %s, want the default job that was running", runs[0].queue)
	}
	for i, r := range runs[1:11] {
		if r.queue != "high" {
			t.Fatalf("run %d after the first came from %s; all 10 high jobs must run before any further default", i+1, r.queue)
		}
	}
}

func TestWeightedQueuesAllProgress(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	var jobs []bus.DispatchManyParams
	for _, q := range []string{"high", "default", "low"} {
		for i := range 250 {
			jobs = append(jobs, bus.DispatchManyParams{Args: record{Queue: q, N: i}, Opts: []bus.Option{bus.OnQueue(q)}})
		}
	}
	if _, err := e.d.DispatchMany(context.Background(), jobs...); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	w := workers.New(e.js, workers.Config{Queues: []string{"high:6", "default:3", "low:1"}, Concurrency: 1, MaxJobs: 300})
	workers.Register(w, func(ctx context.Context, j *workers.Job[record]) error {
		rec.add(j.Job, j.Args.N)
		return nil
	})
	if err := w.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, r := range rec.snapshot() {
		count[r.queue]++
	}
	t.Logf("300 jobs with weights 6:3:1 took high=%d default=%d low=%d", count["high"], count["default"], count["low"])
	// Expected 180/90/30; the bounds are many standard deviations wide.
	if count["low"] < 10 || count["default"] < 50 || count["high"] < 130 || count["high"] <= count["default"] || count["default"] <= count["low"] {
		t.Fatalf("runs per queue %v are not in proportion to weights 6:3:1", count)
	}
}

func TestRetryThenSuccessWithBackoff(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	rec := &recorder{}
	w := workers.New(e.js, workers.Config{Middleware: []workers.Middleware{recordRuns(rec)}})
	workers.RegisterDiagnostics(w)
	start(t, w)
	backoff := []time.Duration{500 * time.Millisecond, time.Second}
	dispatch(t, e, workers.Fail{Times: 2}, bus.Tries(3), bus.Backoff(backoff...))
	waitFor(t, 15*time.Second, "the job to succeed", func() bool { return natstest.StreamMsgs(t, e.js, bus.JobsStream) == 0 })
	// The success was acked: the work queue removed the job, so no further
	// run can come. The consumer delivered it exactly three times.
	if info := consumerInfo(t, e.js, "default"); info.Delivered.Consumer != 3 || info.NumAckPending != 0 || info.NumPending != 0 {
		t.Fatalf("consumer delivered %d times with %d awaiting ack and %d pending, want 3, 0, 0",
			info.Delivered.Consumer, info.NumAckPending, info.NumPending)
	}
	runs := rec.snapshot()
	if len(runs) != 3 {
		t.Fatalf("job ran %d times, want exactly 3", len(runs))
	}
	for i := 1; i < 3; i++ {
		if gap := runs[i].at.Sub(runs[i-1].at); gap < backoff[i-1] {
			t.Errorf("gap before attempt %d was %s, shorter than the backoff %s", i+1, gap, backoff[i-1])
		}
		if runs[i].attempt != i+1 {
			t.Errorf("run %d reports attempt %d", i+1, runs[i].attempt)
		}
	}
	if n := natstest.StreamMsgs(t, e.js, bus.DLQStream); n != 0 {
		t.Fatalf("a job that succeeded on its third try is in DLQ (%d)", n)
	}
}

func recordRuns(rec *recorder) workers.Middleware {
	return func(next workers.HandlerFunc) workers.HandlerFunc {
		return func(ctx context.Context, j *bus.Job) error {
			rec.add(j, 0)
			return next(ctx, j)
		}
	}
}

func TestDeadLetters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	rec := &recorder{}
	w := workers.New(e.js, workers.Config{Middleware: []workers.Middleware{recordRuns(rec)}, Backoff: []time.Duration{50 * time.Millisecond}})
	workers.RegisterDiagnostics(w)
	workers.Register(w, func(ctx context.Context, j *workers.Job[record]) error { panic("kaboom") })
	start(t, w)

	always := dispatch(t, e, workers.Fail{Message: "always broken"}, bus.Tries(3))
	permanent := dispatch(t, e, workers.Fail{Permanent: true, Message: "no point retrying"}, bus.Tries(5))
	panics := dispatch(t, e, record{}, bus.Tries(1))
	undecodable, err := e.d.DispatchJSON(context.Background(), "jetfleet-sleep", []byte(`{"ms":"soon"}`), bus.Tries(5))
	if err != nil {
		t.Fatal(err)
	}
	unknown, err := e.d.DispatchJSON(context.Background(), "nobody-handles-this", []byte(`{}`), bus.Tries(5))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "5 dead letters", func() bool { return natstest.StreamMsgs(t, e.js, bus.DLQStream) == 5 })

	want := map[string]struct {
		attempts, reason string
	}{
		always:      {"3", "always broken"},
		permanent:   {"1", "no point retrying"},
		panics:      {"1", "panic: kaboom"},
		undecodable: {"1", "body does not decode into workers.Sleep"},
		unknown:     {"0", `no handler for kind "nobody-handles-this" on queue default`},
	}
	for _, m := range deadLetters(t, e.js) {
		id := m.Header.Get(bus.HeaderJobID)
		w, ok := want[id]
		if !ok {
			t.Errorf("unexpected dead letter %s", id)
			continue
		}
		reason := m.Header.Get(bus.HeaderError) // one line: \n escaped (the checks look for text on its first line)
		if got := m.Header.Get(bus.HeaderAttempts); got != w.attempts {
			t.Errorf("%s: attempts %s, want %s", reason, got, w.attempts)
		}
		if !strings.Contains(reason, w.reason) {
			t.Errorf("reason %q does not contain %q", reason, w.reason)
		}
		for _, h := range []string{bus.HeaderFailedAt, bus.HeaderOrigin, "Nats-Msg-Id"} {
			if m.Header.Get(h) == "" {
				t.Errorf("%s: header %s missing", reason, h)
			}
		}
		if id == panics && !strings.Contains(reason, "goroutine") {
			t.Errorf("panic reason lacks the stack: %q", reason)
		}
		delete(want, id)
	}
	if len(want) != 0 {
		t.Errorf("missing dead letters: %v", want)
	}
	runs := map[string]int{}
	for _, r := range rec.snapshot() {
		runs[r.id]++
	}
	if runs[always] != 3 || runs[permanent] != 1 || runs[panics] != 1 || runs[undecodable] != 1 || runs[unknown] != 0 {
		t.Errorf("runs per job = %v; want always=3, the others 1, unknown 0", runs)
	}
	if n := natstest.StreamMsgs(t, e.js, bus.JobsStream); n != 0 {
		t.Errorf("JOBS still holds %d messages after dead-lettering", n)
	}
}

func TestTimeoutEndsTheAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	w := workers.New(e.js, workers.Config{})
	workers.RegisterDiagnostics(w)
	start(t, w)
	dispatch(t, e, workers.Sleep{MS: 60_000}, bus.Tries(1), bus.Timeout(300*time.Millisecond))
	waitFor(t, 10*time.Second, "the timed-out job in DLQ", func() bool { return natstest.StreamMsgs(t, e.js, bus.DLQStream) == 1 })
	reason := deadLetters(t, e.js)[0].Header.Get(bus.HeaderError) // one line: \n escaped (the checks look for text on its first line)
	if !strings.Contains(reason, "job timed out after 300ms") {
		t.Fatalf("reason = %q", reason)
	}
}

func TestLongJobStaysOwnedPastAckWait(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{AckWait: 2 * time.Second})
	rec := &recorder{}
	cfg := workers.Config{Concurrency: 4, Bus: bus.Config{AckWait: 2 * time.Second}, Middleware: []workers.Middleware{recordRuns(rec)}}
	for range 2 { // two workers: a lapse in ownership would hand the job to the other
		w := workers.New(e.js, cfg)
		workers.RegisterDiagnostics(w)
		start(t, w)
	}
	dispatch(t, e, workers.Sleep{MS: 6000}, bus.Tries(5))
	waitFor(t, 20*time.Second, "the long job to finish", func() bool { return natstest.StreamMsgs(t, e.js, bus.JobsStream) == 0 })
	if runs := rec.snapshot(); len(runs) != 1 {
		t.Fatalf("a 6s job with a 2s AckWait ran %d times, want 1", len(runs))
	}
}

func TestIdleWorkerWakesForNewAndDelayedJobs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	rec := &recorder{}
	w := workers.New(e.js, workers.Config{Queues: []string{"high", "default"}, Middleware: []workers.Middleware{recordRuns(rec)}})
	workers.RegisterDiagnostics(w)
	start(t, w)
	// Idle: each queue's consumer (which Run creates) holds the worker's
	// parked probe.
	for _, q := range []string{"high", "default"} {
		waitFor(t, 10*time.Second, "the worker's probe parked on "+q, func() bool {
			c, err := e.js.Consumer(context.Background(), bus.JobsStream, bus.ConsumerName(q))
			if err != nil {
				return false
			}
			info, err := c.Info(context.Background())
			return err == nil && info.NumWaiting > 0
		})
	}
	dispatch(t, e, workers.Noop{}, bus.OnQueue("default"))
	// The probe is renewed only every 30s: a run within 5s shows the wake-up works.
	waitFor(t, 5*time.Second, "the new job to run", func() bool { return len(rec.snapshot()) == 1 })
	dispatch(t, e, workers.Noop{}, bus.OnQueue("high"), bus.Delay(time.Second))
	waitFor(t, 6*time.Second, "the delayed job to run", func() bool { return len(rec.snapshot()) == 2 })
}

func TestDrainFinishesRunningJobsAndLeavesTheRest(t *testing.T) {
	e := newEnv(t, bus.Config{})
	rec := &recorder{}
	w := workers.New(e.js, workers.Config{Concurrency: 2, Middleware: []workers.Middleware{recordRuns(rec)}})
	workers.RegisterDiagnostics(w)
	for range 6 {
		dispatch(t, e, workers.Sleep{MS: 800})
	}
	stop := start(t, w)
	waitFor(t, 5*time.Second, "two jobs to start", func() bool { return len(rec.snapshot()) == 2 })
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := natstest.StreamMsgs(t, e.js, bus.JobsStream); n != 4 {
		t.Fatalf("after the drain JOBS holds %d jobs, want the 4 never started", n)
	}
	// The unstarted jobs are ready for another worker at once.
	c, _ := e.js.Consumer(context.Background(), bus.JobsStream, bus.ConsumerName("default"))
	batch, err := c.FetchNoWait(10)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		n++
		if md, _ := m.Metadata(); md.NumDelivered != 1 {
			t.Errorf("unstarted job delivered %d times before", md.NumDelivered-1)
		}
	}
	if n != 4 {
		t.Fatalf("another worker could fetch %d jobs at once, want 4", n)
	}
}

func TestDrainHandsBackWhatCannotFinish(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	started := make(chan struct{}, 1)
	w := workers.New(e.js, workers.Config{Grace: 300 * time.Millisecond})
	workers.Register(w, func(ctx context.Context, j *workers.Job[record]) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	dispatch(t, e, record{}, bus.Tries(3))
	stop := start(t, w)
	<-started
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	c, _ := e.js.Consumer(context.Background(), bus.JobsStream, bus.ConsumerName("default"))
	batch, _ := c.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	m, ok := <-batch.Messages()
	if !ok {
		t.Fatal("the handed-back job is not available at once")
	}
	if md, _ := m.Metadata(); md.NumDelivered != 2 {
		t.Fatalf("handed-back job has NumDelivered %d, want 2", md.NumDelivered)
	}
	if n := natstest.StreamMsgs(t, e.js, bus.DLQStream); n != 0 {
		t.Fatalf("a handed-back job was dead-lettered")
	}
}

func TestOverDeliveredJobIsDeadLetteredUnrun(t *testing.T) {
	t.Parallel()
	// What a worker killed during a job's last attempt leaves behind: a
	// delivery that was never settled. Simulate it by fetching and
	// abandoning the job with a short AckWait, then start a real worker.
	cfg := bus.Config{AckWait: 500 * time.Millisecond}
	e := newEnv(t, cfg)
	if err := bus.ProvisionQueues(context.Background(), e.js, cfg, "default"); err != nil {
		t.Fatal(err)
	}
	id := dispatch(t, e, workers.Noop{}, bus.Tries(1))
	c, _ := e.js.Consumer(context.Background(), bus.JobsStream, bus.ConsumerName("default"))
	batch, _ := c.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if _, ok := <-batch.Messages(); !ok {
		t.Fatal("could not take the job")
	}
	rec := &recorder{}
	w := workers.New(e.js, workers.Config{Bus: cfg, Middleware: []workers.Middleware{recordRuns(rec)}})
	workers.RegisterDiagnostics(w)
	start(t, w)
	waitFor(t, 10*time.Second, "the abandoned job in DLQ", func() bool { return natstest.StreamMsgs(t, e.js, bus.DLQStream) == 1 })
	dl := deadLetters(t, e.js)[0]
	if dl.Header.Get(bus.HeaderJobID) != id || !strings.Contains(dl.Header.Get(bus.HeaderError), "interrupted during its last attempt") {
		t.Fatalf("dead letter %v", dl.Header)
	}
	if len(rec.snapshot()) != 0 {
		t.Fatal("the over-delivered job ran again")
	}
}

// TestJobWithItsTriesUsedSaysSo: a job published with Jetfleet-Tries-Used
// at its tries already is dead-lettered unrun on its first delivery, with
// a reason that says so rather than blaming a worker that died.
func TestJobWithItsTriesUsedSaysSo(t *testing.T) {
	t.Parallel()
	cfg := bus.Config{}
	e := newEnv(t, cfg)
	ctx := context.Background()
	msg := &nats.Msg{Subject: "jobs.default.jetfleet-noop.used-up", Data: []byte(`{}`), Header: nats.Header{}}
	msg.Header.Set(bus.HeaderTries, "2")
	msg.Header.Set(bus.HeaderTriesUsed, "5")
	if _, err := e.js.PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	w := workers.New(e.js, workers.Config{Bus: cfg, Middleware: []workers.Middleware{recordRuns(rec)}})
	workers.RegisterDiagnostics(w)
	start(t, w)
	waitFor(t, 10*time.Second, "the job in DLQ", func() bool { return natstest.StreamMsgs(t, e.js, bus.DLQStream) == 1 })
	if reason := deadLetters(t, e.js)[0].Header.Get(bus.HeaderError); reason != "no try left: it came with Jetfleet-Tries-Used 5 and tries 2" {
		t.Errorf("reason %q", reason)
	}
	if len(rec.snapshot()) != 0 {
		t.Error("the job ran")
	}
}

func TestJobSettingsBeatWorkerDefaults(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	rec := &recorder{}
	w := workers.New(e.js, workers.Config{Tries: 5, Backoff: []time.Duration{10 * time.Millisecond}, Middleware: []workers.Middleware{recordRuns(rec)}})
	workers.RegisterDiagnostics(w)
	start(t, w)
	// A plain publish with only the Jetfleet-Tries header, as another language sends it.
	msg := &nats.Msg{Subject: "jobs.default.jetfleet-fail", Data: []byte(`{}`), Header: nats.Header{bus.HeaderTries: {"2"}}}
	if _, err := e.js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the job in DLQ", func() bool { return natstest.StreamMsgs(t, e.js, bus.DLQStream) == 1 })
	if n := len(rec.snapshot()); n != 2 {
		t.Fatalf("job with Jetfleet-Tries 2 ran %d times under a worker default of 5", n)
	}
}

func TestBadQueueListIsAnError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	for _, qs := range [][]string{{"High"}, {"a", "a"}, {"a:0"}, {"a:x"}} {
		err := workers.New(e.js, workers.Config{Queues: qs}).Run(context.Background())
		if err == nil {
			t.Errorf("queues %q accepted", qs)
		}
	}
}
