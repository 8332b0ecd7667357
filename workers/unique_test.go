package workers_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/workers"
)

// inProcessFleetWorker runs a worker of fleet jobs in the test process and
// returns the IDs of the jobs it finished, as they finish.
func inProcessFleetWorker(t *testing.T, js jetstream.JetStream, cfg bus.Config, tries int) (done func() map[string]bool, stop func() error) {
	t.Helper()
	var mu sync.Mutex
	finished := map[string]bool{}
	w := workers.New(js, workers.Config{Bus: cfg, Tries: tries, Concurrency: 4, Backoff: []time.Duration{50 * time.Millisecond}})
	workers.Register(w, func(ctx context.Context, j *workers.Job[fleetJob]) error {
		defer func() {
			mu.Lock()
			finished[j.ID] = true
			mu.Unlock()
		}()
		time.Sleep(time.Duration(j.Args.MS) * time.Millisecond)
		if j.Args.Fail {
			return workers.Permanent(errors.New("asked to fail"))
		}
		return nil
	})
	stop = start(t, w)
	return func() map[string]bool {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]bool{}
		for id := range finished {
			out[id] = true
		}
		return out
	}, stop
}

// dispatchUntilAccepted dispatches a job with key until it is stored, and
// returns when; a refusal other than ErrDuplicate fails the test.
func dispatchUntilAccepted(t *testing.T, d *bus.Dispatcher, timeout time.Duration, args fleetJob, opts ...bus.Option) (string, time.Time) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		id, err := d.Dispatch(context.Background(), args, opts...)
		if err == nil {
			return id, time.Now()
		}
		if !errors.Is(err, bus.ErrDuplicate) {
			t.Fatalf("dispatch: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the key is still held after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func mustBeDuplicate(t *testing.T, d *bus.Dispatcher, holder string, opts ...bus.Option) {
	t.Helper()
	id, err := d.Dispatch(context.Background(), fleetJob{}, opts...)
	var dup *bus.DuplicateError
	if !errors.As(err, &dup) || !errors.Is(err, bus.ErrDuplicate) || dup.JobID != holder {
		t.Fatalf("dispatch while %s holds the key = %v, want a DuplicateError naming it", holder, err)
	}
	if id != "" {
		t.Fatalf("dispatch while %s holds the key returned ID %q with its error: nothing was stored under it", holder, id)
	}
}

// TestUniqueAcrossProcesses: 100 dispatches with one unique key, from 2
// processes with 2 goroutines each, released at the same instant, store
// exactly 1 job; the 99 others fail with ErrDuplicate naming its ID. The
// key is free again once the job succeeds, once a job holding it is
// dead-lettered, and once a job whose worker was killed (SIGKILL) during
// its last attempt reaches DLQ (until then the key stays held, as
// JetStream still owns the job). UniqueFor holds a key for its time
// whether the job is done or not, and lets it go on time.
func TestUniqueAcrossProcesses(t *testing.T) {
	cfg := bus.Config{AckWait: 2 * time.Second}
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	if err := bus.ProvisionQueues(context.Background(), js, cfg, "default"); err != nil {
		t.Fatal(err)
	}
	d, err := bus.NewDispatcher(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bus.OpenUniqueBucket(context.Background(), js, cfg); err != nil {
		t.Fatal(err)
	}

	at := time.Now().Add(2 * time.Second)
	var ps []*helperProc
	for i := range 2 {
		ps = append(ps, startHelper(t, i, "dispatch", "NATS_URL="+srv.ClientURL(), "HELPER_KEY=sync-account:7",
			"HELPER_GOROUTINES=2", "HELPER_EACH=25", "HELPER_AT="+strconv.FormatInt(at.UnixNano(), 10)))
	}
	var stored []string
	holders := map[string]int{}
	for _, p := range ps {
		select {
		case <-p.Done:
		case <-time.After(60 * time.Second):
			t.Fatalf("dispatcher %d did not finish", p.i)
		}
		sc := bufio.NewScanner(strings.NewReader(p.Stdout.String()))
		for sc.Scan() {
			var r dispatchResult
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("dispatcher %d printed %q", p.i, sc.Text())
			}
			switch {
			case r.OK != "":
				stored = append(stored, r.OK)
			case r.Dup != "":
				holders[r.Dup]++
			default:
				t.Errorf("dispatcher %d: %s", p.i, r.Err)
			}
		}
	}
	if len(stored) != 1 || len(holders) != 1 || holders[stored[0]] != 99 {
		t.Fatalf("stored %v; duplicates by holder %v; want 1 job stored and 99 ErrDuplicate naming it", stored, holders)
	}
	if n := natstest.StreamMsgs(t, js, bus.JobsStream); n != 1 {
		t.Fatalf("JOBS holds %d messages, want 1", n)
	}
	key := bus.Unique("sync-account:7")

	// Done when it succeeds.
	finished, stop := inProcessFleetWorker(t, js, cfg, 3)
	waitFor(t, 10*time.Second, "the unique job succeeds", func() bool { return finished()[stored[0]] })
	dispatchUntilAccepted(t, d, 5*time.Second, fleetJob{}, key)

	// Done when it is dead-lettered.
	failing, err := d.Dispatch(context.Background(), fleetJob{Fail: true}, bus.Unique("report:9"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the failing job is dead-lettered", func() bool { return failedIDs(t, js)[failing] })
	dispatchUntilAccepted(t, d, 5*time.Second, fleetJob{}, bus.Unique("report:9"))
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// Killed during its last attempt: held while JetStream owns the job,
	// free once it is in DLQ.
	worker := startWorkers(t, 1, srv.ClientURL(), "HELPER_ACK_WAIT=2s", "HELPER_TRIES=1")
	long, err := d.Dispatch(context.Background(), fleetJob{N: 7, MS: 60_000}, bus.Unique("import:3"), bus.Tries(1))
	if err != nil {
		t.Fatal(err)
	}
	waitEvents(t, worker, 10*time.Second, "the long job starts", func(evs []event) bool {
		return slices.ContainsFunc(evs, func(e event) bool { return e.ID == long && e.Ev == "start" })
	})
	if err := worker[0].Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-worker[0].Done
	mustBeDuplicate(t, d, long, bus.Unique("import:3"))
	_, stop = inProcessFleetWorker(t, js, cfg, 1)
	waitFor(t, 20*time.Second, "the killed job reaches DLQ", func() bool { return failedIDs(t, js)[long] })
	dispatchUntilAccepted(t, d, 5*time.Second, fleetJob{}, bus.Unique("import:3"))

	// UniqueFor: held for its time, done or not, and no longer. The clock
	// starts before the dispatch: the server stamps the key while Dispatch
	// is still waiting for the job's own publish, so a clock started after
	// it returns reads the hold short by that round trip.
	took := time.Now()
	digest, err := d.Dispatch(context.Background(), fleetJob{}, bus.Unique("digest", bus.UniqueFor(2*time.Second)))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	mustBeDuplicate(t, d, digest, bus.Unique("digest", bus.UniqueFor(2*time.Second)))
	_, accepted := dispatchUntilAccepted(t, d, 10*time.Second, fleetJob{}, bus.Unique("digest", bus.UniqueFor(2*time.Second)))
	held := accepted.Sub(took)
	t.Logf("UniqueFor(2s) held the key %s", held.Round(time.Millisecond))
	// Never early; late by at most the server's expiry pass (it checks TTLs
	// at most every 250 ms and counts whole seconds) and our 20 ms polls.
	if held < 2*time.Second || held > 3500*time.Millisecond {
		t.Errorf("UniqueFor(2s) held the key %s, want 2s to 3.5s", held)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// failedIDs is the set of job IDs in DLQ.
func failedIDs(t *testing.T, js jetstream.JetStream) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, m := range deadLetters(t, js) {
		out[m.Header.Get(bus.HeaderJobID)] = true
	}
	return out
}

// TestUniqueRefusesBadKeys: an empty key, a key over 128 bytes, a key
// with a control character, a negative UniqueFor and a unique periodic
// job are refused with ErrInvalid, storing nothing.
func TestUniqueRefusesBadKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	ctx := context.Background()
	for _, c := range []struct {
		opt  bus.Option
		want string
	}{
		{bus.Unique(""), "unique key is empty"},
		{bus.Unique(strings.Repeat("k", 129)), "unique key is 129 bytes; the limit is 128"},
		{bus.Unique("a\nb"), "contains a control character"},
		{bus.Unique("k", bus.UniqueFor(-time.Second)), "UniqueFor is -1s"},
		{bus.Unique("k", bus.UniqueLease(0)), "UniqueLease is 0s"},
	} {
		_, err := e.d.Dispatch(ctx, fleetJob{}, c.opt)
		if !errors.Is(err, bus.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Dispatch = %v, want ErrInvalid saying %q", err, c.want)
		}
	}
	if err := e.d.Schedule(ctx, "digest", "@every 1h", fleetJob{}, bus.Unique("digest")); !errors.Is(err, bus.ErrInvalid) {
		t.Errorf("Schedule with Unique = %v, want ErrInvalid", err)
	}
	// Where no key can be taken, Unique fails rather than store a job
	// unique in name only.
	uniq := []bus.Option{bus.Unique("k")}
	refused := map[string]error{}
	_, refused["a batch's job"] = e.d.Batch(ctx, []bus.DispatchManyParams{{Args: fleetJob{}, Opts: uniq}})
	_, refused["a batch's callback"] = e.d.Batch(ctx, []bus.DispatchManyParams{{Args: fleetJob{}}}, bus.Then(fleetJob{}, uniq...))
	_, refused["a chain's step"] = e.d.Chain(ctx, []bus.Step{bus.StepJob(fleetJob{}, uniq...)})
	_, refused["Prepare"] = e.d.Prepare(ctx, fleetJob{}, uniq...)
	_, refused["PrepareJSON"] = e.d.PrepareJSON(ctx, "fleet-job", []byte(`{}`), uniq...)
	for what, err := range refused {
		if !errors.Is(err, bus.ErrInvalid) || !strings.Contains(err.Error(), "cannot be unique") {
			t.Errorf("%s with Unique = %v, want ErrInvalid saying it cannot be unique", what, err)
		}
	}
	if _, err := e.d.Dispatch(ctx, fleetJob{}, bus.Unique(strings.Repeat("é", 64))); err != nil {
		t.Errorf("a key of 128 bytes: %v", err)
	}
	if n := natstest.StreamMsgs(t, e.js, bus.JobsStream); n != 1 {
		t.Errorf("JOBS holds %d messages, want only the valid one", n)
	}
}

// TestUniqueInABatchAndAgainWithTheSameID: DispatchMany refuses the
// second job of a batch with the key held by the first (aligned errors),
// and dispatching the holder's own job ID again is not a duplicate
// (JetStream's dedupe stores it once).
func TestUniqueInABatchAndAgainWithTheSameID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	ctx := context.Background()
	ids, err := e.d.DispatchMany(ctx,
		bus.DispatchManyParams{Args: fleetJob{N: 1}, Opts: []bus.Option{bus.Unique("u"), bus.JobID("first")}},
		bus.DispatchManyParams{Args: fleetJob{N: 2}, Opts: []bus.Option{bus.Unique("u")}},
		bus.DispatchManyParams{Args: fleetJob{N: 3}, Opts: []bus.Option{bus.Unique("v")}},
	)
	var be *bus.BatchError
	var dup *bus.DuplicateError
	if !errors.As(err, &be) || be.Failed != 1 || !errors.As(be.Errs[1], &dup) || dup.JobID != "first" || ids[0] != "first" || ids[2] == "" {
		t.Fatalf("DispatchMany = %v, %v; want only the second refused as a duplicate of first", ids, err)
	}
	if _, err := e.d.Dispatch(ctx, fleetJob{N: 1}, bus.Unique("u"), bus.JobID("first")); err != nil {
		t.Fatalf("the holder's own ID again: %v", err)
	}
	if n := natstest.StreamMsgs(t, e.js, bus.JobsStream); n != 2 {
		t.Fatalf("JOBS holds %d, want 2", n)
	}
	kv, err := e.js.KeyValue(ctx, bus.UniqueBucket)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(ctx, bus.KeyToken("u"))
	if err != nil {
		t.Fatal(err)
	}
	var lock bus.UniqueLock
	if err := json.Unmarshal(entry.Value(), &lock); err != nil || lock.JobID != "first" || !lock.UntilDone || lock.Key != "u" || lock.Kind != "fleet-job" {
		t.Fatalf("lock = %+v, %v", lock, err)
	}
}

// TestAJobIDStoredBeforeLeavesNoKeyHeld: dispatching a job ID JetStream
// stored before (within its dedupe window) stores nothing new, so a key
// that dispatch took names no job that will free it: it is freed at once.
// That is the ID of a job that ran and freed its key, or of a waiting job
// with another key (which stays held). The holder's own ID with its own
// key (a dispatch sent again after an unanswered one) keeps the key.
func TestAJobIDStoredBeforeLeavesNoKeyHeld(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	ctx := context.Background()
	if err := bus.EnsureQueues(ctx, e.js, bus.Config{}, "idle"); err != nil {
		t.Fatal(err)
	}
	held := func(key string) bool {
		t.Helper()
		_, err := e.d.Dispatch(ctx, workers.Noop{}, bus.Unique(key, bus.UniqueFor(time.Second)), bus.OnQueue("idle"))
		if err != nil && !errors.Is(err, bus.ErrDuplicate) {
			t.Fatal(err)
		}
		return err != nil
	}
	// A job that ran and freed its key, dispatched again with it.
	dispatch(t, e, workers.Noop{}, bus.Unique("ran"), bus.JobID("ran-job"), bus.OnQueue("idle"))
	job := &bus.Job{ID: "ran-job", Header: nats.Header{bus.HeaderUnique: []string{"ran"}}}
	if err := bus.UnlockUnique(ctx, e.js, job); err != nil { // as a worker does when it ends
		t.Fatal(err)
	}
	dispatch(t, e, workers.Noop{}, bus.Unique("ran"), bus.JobID("ran-job"), bus.OnQueue("idle"))
	if held("ran") {
		t.Errorf("the key of a job ID stored before stays held by a job that will never free it")
	}
	// A waiting job with key a, dispatched again with key b.
	dispatch(t, e, workers.Noop{}, bus.Unique("a"), bus.JobID("waiting"), bus.OnQueue("idle"))
	dispatch(t, e, workers.Noop{}, bus.Unique("b"), bus.JobID("waiting"), bus.OnQueue("idle"))
	if held("b") {
		t.Errorf("key b, taken for a job stored before with key a, stays held")
	}
	if !held("a") {
		t.Errorf("key a of the waiting job was freed")
	}
	// The holder's own ID and key again: the key stays.
	dispatch(t, e, workers.Noop{}, bus.Unique("own"), bus.JobID("holder"), bus.OnQueue("idle"))
	dispatch(t, e, workers.Noop{}, bus.Unique("own"), bus.JobID("holder"), bus.OnQueue("idle"))
	if !held("own") {
		t.Errorf("the holder's key was freed when its own dispatch was sent again")
	}
}

// TestACancelledUniqueJobFreesItsKey: a unique job cancelled while it
// waits (ready, delayed), while it runs, with its queue, or by its own
// handler (an error wrapping ErrCancelled) frees its key at once: the
// same key is taken again right after, not when its lease ends.
func TestACancelledUniqueJobFreesItsKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	ctx := context.Background()
	if err := bus.EnsureQueues(ctx, e.js, bus.Config{}, "default", "idle"); err != nil {
		t.Fatal(err)
	}
	in, err := bus.NewInspector(e.js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	takeAgain := func(what, key string) {
		t.Helper()
		if _, err := e.d.Dispatch(ctx, workers.Noop{}, bus.Unique(key), bus.OnQueue("idle")); err != nil {
			t.Errorf("%s: the key again: %v", what, err)
		}
	}
	// No worker serves "idle": its jobs wait.
	ready := dispatch(t, e, workers.Noop{}, bus.Unique("ready"), bus.OnQueue("idle"))
	delayed := dispatch(t, e, workers.Noop{}, bus.Unique("delayed"), bus.OnQueue("idle"), bus.Delay(time.Hour))
	for what, id := range map[string]string{"ready": ready, "delayed": delayed} {
		if _, err := in.Cancel(ctx, id); err != nil {
			t.Fatalf("cancel %s: %v", what, err)
		}
		takeAgain(what, what)
	}
	dispatch(t, e, workers.Noop{}, bus.Unique("queued"), bus.OnQueue("idle"))
	if n, err := in.CancelQueue(ctx, "idle"); err != nil || n != 3 {
		t.Fatalf("CancelQueue = %d, %v; want 3", n, err)
	}
	takeAgain("cancelled with its queue", "queued")

	w := workers.New(e.js, workers.Config{Queues: []string{"default"}})
	workers.RegisterDiagnostics(w)
	workers.Register(w, func(ctx context.Context, j *workers.Job[fleetJob]) error {
		return fmt.Errorf("not worth retrying: %w", workers.ErrCancelled)
	})
	start(t, w)
	running := dispatch(t, e, workers.Sleep{MS: 30_000}, bus.Unique("running"))
	waitFor(t, 10*time.Second, "the job running", func() bool {
		st, err := in.Job(ctx, running)
		return err == nil && st.State == bus.JobRunning
	})
	if _, err := in.Cancel(ctx, running); err != nil {
		t.Fatal(err)
	}
	self := dispatch(t, e, fleetJob{}, bus.Unique("self"))
	for id, key := range map[string]string{running: "running", self: "self"} {
		waitFor(t, 10*time.Second, key+" cancelled", func() bool {
			st, err := in.Job(ctx, id)
			return err == nil && st.State == bus.JobCancelled
		})
		takeAgain(key, key)
	}
	if n := natstest.StreamMsgs(t, e.js, bus.DLQStream); n != 0 {
		t.Errorf("%d dead letters; a job that cancels itself is not one", n)
	}
}

// TestAUniqueJobsKeyIsFreedOnceItsAckIsConfirmed: a unique job succeeds
// while its NATS server is down for longer than one try to settle it. The
// worker frees the key only once the server confirmed the ack, trying
// through the outage: after the server is back, the key is free (a new
// job of the key is accepted) and the first job ran once and is gone from
// JOBS. A key freed after an ack the server never got would let a second
// job in while the first is delivered again; a key whose one unlock
// failed would stay held for its whole lease.
func TestAUniqueJobsKeyIsFreedOnceItsAckIsConfirmed(t *testing.T) {
	t.Parallel()
	cfg := natsembed.Config{Name: "unique-ack", Listen: fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(t, 1)[0]), StoreDir: t.TempDir()}
	srv, err := natsembed.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := context.Background()
	if err := bus.Provision(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	runs := map[string]int{}
	started, release := make(chan struct{}, 1), make(chan struct{})
	w := workers.New(js, workers.Config{Queues: []string{"default"}})
	workers.Register(w, func(ctx context.Context, j *workers.Job[fleetJob]) error {
		mu.Lock()
		runs[j.ID]++
		mu.Unlock()
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
		return nil
	})
	start(t, w)
	first, err := d.Dispatch(ctx, fleetJob{}, bus.Unique("k"))
	if err != nil {
		t.Fatal(err)
	}
	<-started
	srv.Shutdown()
	close(release)              // the job succeeds with no server to ack it to
	time.Sleep(6 * time.Second) // longer than one try (5 s)
	srv2, err := natsembed.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv2.Shutdown)

	dispatchUntilAccepted(t, d, 40*time.Second, fleetJob{}, bus.Unique("k"))
	mu.Lock()
	n := runs[first]
	mu.Unlock()
	if n != 1 {
		t.Errorf("the first job ran %d times before its key was free again, want 1", n)
	}
	in, err := bus.NewInspector(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the first job's record to say it succeeded", func() bool {
		st, err := in.Job(ctx, first)
		return err == nil && st.State == bus.JobSucceeded
	})
}
