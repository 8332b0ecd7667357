package workers_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/workers"
)

// deadCall is one call of a dead-letter hook, with what the test saw
// from inside it.
type deadCall struct {
	hook   string // "kind" or "worker"
	id     string
	kind   string
	reason string
	args   record
	inDLQ  bool // the dead letter was stored when the hook ran
	inJOBS bool // the original was still in JOBS when the hook ran
}

// deadCalls records hook calls, safe for concurrent hooks.
type deadCalls struct {
	mu    sync.Mutex
	calls []deadCall
}

func (d *deadCalls) add(c deadCall) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls = append(d.calls, c)
}

// of returns the calls for job id, in order.
func (d *deadCalls) of(id string) []deadCall {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []deadCall
	for _, c := range d.calls {
		if c.id == id {
			out = append(out, c)
		}
	}
	return out
}

// observe returns what a hook sees of job: whether DLQ holds its letter
// and JOBS still holds the original.
func observe(ctx context.Context, js jetstream.JetStream, job *bus.Job) (inDLQ, inJOBS bool) {
	in, _ := bus.NewInspector(js, bus.Config{})
	fj, err := in.FailedJob(ctx, job.ID)
	inDLQ = err == nil && fj.Origin == fmt.Sprintf("%s:%d", bus.JobsStream, job.Seq)
	if s, err := js.Stream(ctx, bus.JobsStream); err == nil {
		_, err = s.GetMsg(ctx, job.Seq)
		inJOBS = err == nil
	}
	return inDLQ, inJOBS
}

// hooked registers record's handler, with a kind hook, on a worker that
// has a worker-level hook too; both record into calls.
func hooked(js jetstream.JetStream, cfg workers.Config, calls *deadCalls, fn func(context.Context, *workers.Job[record]) error) *workers.Worker {
	cfg.OnDeadLetter = func(ctx context.Context, job *bus.Job, reason string) error {
		inDLQ, inJOBS := observe(ctx, js, job)
		calls.add(deadCall{hook: "worker", id: job.ID, kind: job.Kind, reason: reason, inDLQ: inDLQ, inJOBS: inJOBS})
		return nil
	}
	w := workers.New(js, cfg)
	workers.Register(w, fn, workers.OnDeadLetter(func(ctx context.Context, job *workers.Job[record], reason string) error {
		inDLQ, inJOBS := observe(ctx, js, job.Job)
		calls.add(deadCall{hook: "kind", id: job.ID, kind: job.Kind, reason: reason, args: job.Args, inDLQ: inDLQ, inJOBS: inJOBS})
		return nil
	}))
	return w
}

// TestDeadLetterHooksRunEveryWay dead-letters a job in every way a job can
// end in DLQ and checks that the kind's hook (when the kind has a
// handler) and then the worker's hook ran once each, with the reason,
// after DLQ held the letter and before the original left JOBS.
func TestDeadLetterHooksRunEveryWay(t *testing.T) {
	e := newEnv(t, bus.Config{})
	calls := &deadCalls{}
	w := hooked(e.js, workers.Config{Concurrency: 4}, calls, func(ctx context.Context, j *workers.Job[record]) error {
		switch j.Args.N {
		case 1:
			return fmt.Errorf("boom on attempt %d", j.Attempt)
		case 2:
			return workers.Permanent(errors.New("final: cannot ever work"))
		case 3:
			panic("kaboom")
		case 4:
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	})
	fast := bus.Backoff(10 * time.Millisecond)
	ids := map[string]string{ // job ID → what its reason must say
		dispatch(t, e, record{N: 1}, bus.Tries(2), fast):                                 "boom on attempt 2",
		dispatch(t, e, record{N: 2}, bus.Tries(3)):                                       "final: cannot ever work",
		dispatch(t, e, record{N: 3}, bus.Tries(1)):                                       "panic: kaboom",
		dispatch(t, e, record{N: 4}, bus.Tries(1), bus.Timeout(100*time.Millisecond)):    "job timed out after 100ms",
		mustJSON(t, e, "record", `{"queue":"kept","n":"not a number"}`):                  "body does not decode into",
		mustJSON(t, e, "nobody-handles-this", `{}`):                                      `no handler for kind "nobody-handles-this"`,
		publishRaw(t, e.js, "record", nats.Header{bus.HeaderTries: {"zero"}}, `{"n":7}`): bus.HeaderTries,
		// A count that would overflow the attempt number (a failing
		// handler then crashed the worker picking its retry delay).
		publishRaw(t, e.js, "record", nats.Header{bus.HeaderTriesUsed: {"9223372036854775807"}, bus.HeaderBackoff: {"10ms"}}, `{"n":1}`): bus.HeaderTriesUsed,
	}
	start(t, w)
	for id, want := range ids {
		waitFor(t, 20*time.Second, "the hooks of job "+id, func() bool {
			got := calls.of(id)
			return len(got) > 0 && got[len(got)-1].hook == "worker"
		})
		got := calls.of(id)
		hooks := []string{}
		for _, c := range got {
			hooks = append(hooks, c.hook)
			if !strings.Contains(c.reason, want) || !c.inDLQ || !c.inJOBS {
				t.Errorf("job %s, %s hook: reason %q (want %q), letter in DLQ %v, original in JOBS %v; want both", id, c.hook, c.reason, want, c.inDLQ, c.inJOBS)
			}
		}
		wantHooks := "kind,worker"
		if got[0].kind == "nobody-handles-this" {
			wantHooks = "worker"
		}
		if strings.Join(hooks, ",") != wantHooks {
			t.Errorf("job %s (%s): hooks ran %v, want %s once each", id, got[0].kind, hooks, wantHooks)
		}
		if got[0].kind == "record" && strings.Contains(want, "does not decode") && got[0].args.Queue != "kept" {
			t.Errorf("the kind hook of the undecodable job got %+v, want the field that decodes (queue kept)", got[0].args)
		}
	}
	waitFor(t, 10*time.Second, "JOBS empty", func() bool { return jobsIn(t, e.js) == 0 })
	if n := len(deadLetters(t, e.js)); n != len(ids) {
		t.Fatalf("DLQ holds %d letters, want %d", n, len(ids))
	}
}

// TestDeadLetterHookErrorHandsTheJobBack: a hook that fails hands the job
// back; its next deliveries run the hooks again with the stored reason
// and never the handler, until the hook succeeds; one dead letter.
func TestDeadLetterHookErrorHandsTheJobBack(t *testing.T) {
	e := newEnv(t, bus.Config{})
	var mu sync.Mutex
	runs, hookCalls := 0, []string{}
	w := workers.New(e.js, workers.Config{})
	workers.Register(w, func(ctx context.Context, j *workers.Job[record]) error {
		mu.Lock()
		defer mu.Unlock()
		runs++
		return workers.Permanent(errors.New("no such order"))
	}, workers.HandlerTries(5), workers.HandlerBackoff(50*time.Millisecond),
		workers.OnDeadLetter(func(ctx context.Context, j *workers.Job[record], reason string) error {
			mu.Lock()
			defer mu.Unlock()
			hookCalls = append(hookCalls, fmt.Sprintf("attempt %d: %s", j.Attempt, reason))
			if len(hookCalls) < 3 {
				return errors.New("database unavailable")
			}
			return nil
		}))
	dispatch(t, e, record{N: 1})
	start(t, w)
	waitFor(t, 20*time.Second, "JOBS empty", func() bool { return jobsIn(t, e.js) == 0 })
	mu.Lock()
	defer mu.Unlock()
	want := []string{"attempt 1: no such order", "attempt 2: no such order", "attempt 3: no such order"}
	if runs != 1 || strings.Join(hookCalls, "|") != strings.Join(want, "|") {
		t.Fatalf("handler ran %d times (want 1); hook calls %q, want %q", runs, hookCalls, want)
	}
	if n := len(deadLetters(t, e.js)); n != 1 {
		t.Fatalf("DLQ holds %d letters, want 1", n)
	}
}

// TestDeadLetterHooksAfterKill9 kills a worker process with SIGKILL in
// the two places a crash can leave a dead job: during its last attempt
// (the next worker dead-letters it unrun) and during its dead-letter hook,
// after DLQ stored the letter (the next worker runs the hooks again with
// the stored reason and not the handler). Either way another worker's
// hooks run, and DLQ holds one letter.
func TestDeadLetterHooksAfterKill9(t *testing.T) {
	for _, tc := range []struct{ mode, reason string }{
		{"block-handler", "interrupted during its last attempt"},
		{"block-hook", "fails for good"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cfg := bus.Config{AckWait: time.Second}
			e := newEnv(t, cfg)
			url := e.js.Conn().ConnectedUrl()
			signal, err := e.js.Conn().SubscribeSync("helper." + tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			e.js.Conn().Flush()
			helper := exec.Command(os.Args[0], "-test.run=^TestHelperWorkerProcess$", "-test.count=1")
			helper.Env = append(os.Environ(), "JETFLEET_TEST_HELPER="+tc.mode, "JETFLEET_TEST_NATS="+url)
			var stderr strings.Builder
			helper.Stderr = &stderr
			if err := helper.Start(); err != nil {
				t.Fatal(err)
			}
			id := dispatch(t, e, record{N: 1}, bus.Tries(1))
			if _, err := signal.NextMsg(30 * time.Second); err != nil {
				helper.Process.Kill()
				helper.Wait()
				t.Fatalf("the helper never got to %s: %v\n%s", tc.mode, err, stderr.String())
			}
			if err := helper.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
			helper.Wait()

			calls := &deadCalls{}
			var ran sync.Mutex
			runs := 0
			w := hooked(e.js, workers.Config{Bus: cfg}, calls, func(context.Context, *workers.Job[record]) error {
				ran.Lock()
				defer ran.Unlock()
				runs++
				return nil
			})
			start(t, w)
			waitFor(t, 20*time.Second, "the hooks after the kill", func() bool { return len(calls.of(id)) == 2 })
			waitFor(t, 10*time.Second, "JOBS empty", func() bool { return jobsIn(t, e.js) == 0 })
			for _, c := range calls.of(id) {
				if !strings.Contains(c.reason, tc.reason) || !c.inDLQ || !c.inJOBS {
					t.Errorf("%s hook: reason %q (want %q), in DLQ %v, in JOBS %v", c.hook, c.reason, tc.reason, c.inDLQ, c.inJOBS)
				}
			}
			ran.Lock()
			defer ran.Unlock()
			if runs != 0 {
				t.Errorf("the handler ran %d times after the kill; the job was dead already", runs)
			}
			if n := len(deadLetters(t, e.js)); n != 1 {
				t.Errorf("DLQ holds %d letters, want 1", n)
			}
		})
	}
}

// TestHelperWorkerProcess is not a test: TestDeadLetterHooksAfterKill9
// runs the test binary with JETFLEET_TEST_HELPER set to get a worker
// process it can kill. Its handler and hook tell the test where they are
// on helper.<mode> and then wait to be killed.
func TestHelperWorkerProcess(t *testing.T) {
	mode := os.Getenv("JETFLEET_TEST_HELPER")
	if mode == "" {
		t.Skip("a worker process for TestDeadLetterHooksAfterKill9")
	}
	nc, err := nats.Connect(os.Getenv("JETFLEET_TEST_NATS"))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	tell := func() {
		nc.Publish("helper."+mode, nil)
		nc.Flush()
	}
	w := workers.New(js, workers.Config{Bus: bus.Config{AckWait: time.Second}})
	workers.Register(w, func(ctx context.Context, j *workers.Job[record]) error {
		if mode == "block-handler" {
			tell()
			time.Sleep(time.Hour) // killed here
		}
		return workers.Permanent(errors.New("fails for good"))
	}, workers.OnDeadLetter(func(ctx context.Context, j *workers.Job[record], reason string) error {
		if mode == "block-hook" {
			tell()
			time.Sleep(time.Hour) // killed here
		}
		return nil
	}))
	w.Run(context.Background())
}

// TestOnDeadLetterForAnotherKindPanics: the hook's type must be the
// handler's.
func TestOnDeadLetterForAnotherKindPanics(t *testing.T) {
	defer func() {
		if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), `OnDeadLetter for kind "jetfleet-noop" given to the handler of kind "record"`) {
			t.Fatalf("recovered %v", p)
		}
	}()
	w := workers.New(nil, workers.Config{})
	workers.Register(w, func(context.Context, *workers.Job[record]) error { return nil },
		workers.OnDeadLetter(func(context.Context, *workers.Job[workers.Noop], string) error { return nil }))
}

func mustJSON(t *testing.T, e *env, kind, body string) string {
	t.Helper()
	id, err := e.d.DispatchJSON(context.Background(), kind, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// publishRaw publishes a job with its own headers, as a program using
// nats.go would, and returns its ID (its JOBS sequence).
func publishRaw(t *testing.T, js jetstream.JetStream, kind string, h nats.Header, body string) string {
	t.Helper()
	ack, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: bus.JobSubject("default", kind), Header: h, Data: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(ack.Sequence)
}

func jobsIn(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), bus.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestAJobTooLargeForItsDeadLetterIsStillDeadLettered: a job published
// raw within a few hundred bytes of max_payload leaves no room for its
// dead letter's headers. It used to be handed back every 5 s, never
// stored; its letter now keeps the body's size instead of the body, says
// why, and cannot be retried.
func TestAJobTooLargeForItsDeadLetterIsStillDeadLettered(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	body := `"` + strings.Repeat("x", int(e.js.Conn().MaxPayload())-200) + `"`
	id := publishRaw(t, e.js, "nobody-handles-this", nats.Header{}, body)
	w := workers.New(e.js, workers.Config{})
	workers.Register(w, func(context.Context, *workers.Job[record]) error { return nil })
	start(t, w)
	waitFor(t, 20*time.Second, "the job's dead letter", func() bool { return len(deadLetters(t, e.js)) == 1 })
	dl := deadLetters(t, e.js)[0]
	reason := dl.Header.Get(bus.HeaderError)
	if dl.Header.Get(bus.HeaderBodyOmitted) != strconv.Itoa(len(body)) || len(dl.Data) != 0 ||
		!strings.Contains(reason, "is not kept") || !strings.Contains(reason, `no handler for kind "nobody-handles-this"`) {
		t.Fatalf("dead letter: %s=%q, body %d bytes, reason %q; want the body's size, no body, and both reasons",
			bus.HeaderBodyOmitted, dl.Header.Get(bus.HeaderBodyOmitted), len(dl.Data), reason)
	}
	waitFor(t, 10*time.Second, "JOBS empty", func() bool { return jobsIn(t, e.js) == 0 })
	in, err := bus.NewInspector(e.js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := in.Retry(context.Background(), id); n != 0 || !errors.Is(err, bus.ErrInvalid) || !strings.Contains(err.Error(), "kept no body") {
		t.Fatalf("Retry of a letter without its body: %d, %v; want a refusal saying why", n, err)
	}
}

func TestAFullDLQKeepsTheJobQueuedUntilThereIsRoom(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, bus.Config{FailedMaxBytes: 4096})
	log := &logBuffer{}
	var mu sync.Mutex
	runs := map[int]int{}
	w := workers.New(e.js, workers.Config{Tries: 2, Logger: zerolog.New(log)})
	workers.Register(w, func(_ context.Context, j *workers.Job[record]) error {
		mu.Lock()
		runs[j.Args.N]++
		mu.Unlock()
		return workers.Permanent(fmt.Errorf("job %d always fails", j.Args.N))
	})
	start(t, w)

	first := dispatch(t, e, record{N: 1})
	waitFor(t, 10*time.Second, "the first dead letter", func() bool { return len(deadLetters(t, e.js)) == 1 })
	// Fill DLQ to within 100 bytes of its bound, as other letters would.
	s, err := e.js.Stream(ctx, bus.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	room := 4096 - int(info.State.Bytes) - 100
	filler := &nats.Msg{Subject: "dlq.default.record.filler", Data: []byte(strings.Repeat("x", room-len("dlq.default.record.filler")-22))}
	if _, err := e.js.PublishMsg(ctx, filler); err != nil {
		t.Fatal(err)
	}

	second := dispatch(t, e, record{N: 2})
	waitFor(t, 10*time.Second, "a refused dead letter in the log", func() bool { return log.count("DLQ is full") > 0 })
	if n := jobsIn(t, e.js); n != 1 {
		t.Fatalf("JOBS holds %d jobs after DLQ refused the letter; want the job (%s) kept", n, second)
	}
	if n := len(deadLetters(t, e.js)); n != 2 {
		t.Fatalf("DLQ holds %d letters; want the first job's and the filler", n)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject("dlq.default.record.filler")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the second job's dead letter once there is room", func() bool {
		for _, m := range deadLetters(t, e.js) {
			if m.Header.Get(bus.HeaderJobID) == second {
				return true
			}
		}
		return false
	})
	waitFor(t, 10*time.Second, "JOBS empty", func() bool { return jobsIn(t, e.js) == 0 })
	dl := deadLetters(t, e.js)
	if len(dl) != 2 || dl[0].Header.Get(bus.HeaderJobID) != first {
		t.Fatalf("DLQ holds %d letters, the first for %q; want the first job's kept and the second's added", len(dl), dl[0].Header.Get(bus.HeaderJobID))
	}
	// Stored again while DLQ was full, the job was not run again (its
	// error was permanent) and its letter has its handler's error.
	reason := dl[1].Header.Get(bus.HeaderError)
	if !strings.Contains(reason, "job 2 always fails") || dl[1].Header.Get(bus.HeaderAttempts) != "1" || dl[1].Header.Get(bus.HeaderPendingFailure) != "" {
		t.Errorf("the second letter: reason %q, attempts %s, pending %q; want the handler's error after 1 attempt",
			reason, dl[1].Header.Get(bus.HeaderAttempts), dl[1].Header.Get(bus.HeaderPendingFailure))
	}
	mu.Lock()
	defer mu.Unlock()
	if runs[2] != 1 {
		t.Errorf("the second job ran %d times; want once (a permanent error is not retried)", runs[2])
	}
}
