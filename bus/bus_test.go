package bus_test

import (
	"context"
	"errors"
	"maps"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/bus/internal/wire"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

type welcomeEmail struct {
	UserID int64 `json:"user_id"`
}

func (welcomeEmail) Kind() string { return "send-welcome-email" }

// setup starts a server, provisions the topology with consumers for queues
// and returns a JetStream context and a dispatcher.
func setup(t *testing.T, cfg bus.Config, queues ...string) (jetstream.JetStream, *bus.Dispatcher) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	if err := bus.ProvisionQueues(context.Background(), js, cfg, queues...); err != nil {
		t.Fatalf("provision: %v", err)
	}
	d, err := bus.NewDispatcher(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return js, d
}

// fetchOne pulls one message from queue's consumer within wait, or nil.
func fetchOne(t *testing.T, js jetstream.JetStream, queue string, wait time.Duration) jetstream.Msg {
	t.Helper()
	c, err := js.Consumer(context.Background(), bus.JobsStream, wire.ConsumerName(queue))
	if err != nil {
		t.Fatalf("consumer %s: %v", queue, err)
	}
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(wait))
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	for m := range batch.Messages() {
		return m
	}
	return nil
}

func TestPlainPublishIsAJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, _ := setup(t, bus.Config{}, "default")
	// What another language does: a bare publish, no headers.
	ack, err := js.Publish(ctx, "jobs.default.send-welcome-email", []byte(`{"user_id":7}`))
	if err != nil {
		t.Fatalf("plain publish: %v", err)
	}
	m := fetchOne(t, js, "default", 2*time.Second)
	if m == nil {
		t.Fatal("the worker's consumer did not see the plainly published job")
	}
	job, err := bus.ParseJob(m)
	if err != nil {
		t.Fatalf("ParseJob: %v", err)
	}
	if job.Queue != "default" || job.Kind != "send-welcome-email" || string(job.Body) != `{"user_id":7}` {
		t.Fatalf("job = %+v", job)
	}
	if want := strconv.FormatUint(ack.Sequence, 10); job.ID != want {
		t.Fatalf("job ID = %q, want the stream sequence %q", job.ID, want)
	}
	if job.Tries != 0 || job.Timeout != 0 || job.Backoff != nil || job.Attempt != 1 {
		t.Fatalf("a job without headers should have no settings and attempt 1: %+v", job)
	}
}

func TestDispatchSetsExactlyTheContractHeaders(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "high", "default")
	id, err := d.Dispatch(ctx, welcomeEmail{UserID: 7}, bus.OnQueue("high"), bus.Tries(5),
		bus.Timeout(90*time.Second), bus.Backoff(time.Second, 10*time.Second))
	if err != nil {
		t.Fatalf("dispatch: %v", err)
	}
	m := fetchOne(t, js, "high", 2*time.Second)
	if m == nil {
		t.Fatal("dispatched job not delivered")
	}
	want := nats.Header{
		"Nats-Msg-Id":      {id},
		"Jetfleet-Tries":   {"5"},
		"Jetfleet-Timeout": {"1m30s"},
		"Jetfleet-Backoff": {"1s,10s"},
	}
	assertHeaders(t, m.Headers(), want)
	if m.Subject() != "jobs.high.send-welcome-email."+id || string(m.Data()) != `{"user_id":7}` {
		t.Fatalf("subject %q body %s", m.Subject(), m.Data())
	}
	job, err := bus.ParseJob(m)
	if err != nil {
		t.Fatal(err)
	}
	if job.ID != id || job.Tries != 5 || job.Timeout != 90*time.Second || len(job.Backoff) != 2 || job.Backoff[1] != 10*time.Second {
		t.Fatalf("parsed job = %+v", job)
	}

	id2, err := d.Dispatch(ctx, welcomeEmail{UserID: 8})
	if err != nil {
		t.Fatal(err)
	}
	m = fetchOne(t, js, "default", 2*time.Second)
	if m == nil {
		t.Fatal("job on the default queue not delivered")
	}
	assertHeaders(t, m.Headers(), nats.Header{"Nats-Msg-Id": {id2}})
}

func assertHeaders(t *testing.T, got, want nats.Header) {
	t.Helper()
	for k, v := range want {
		if g := got.Values(k); len(g) != 1 || g[0] != v[0] {
			t.Errorf("header %s = %q, want %q", k, g, v[0])
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected header %s = %q", k, got.Values(k))
		}
	}
}

func TestDispatchValidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := natstest.Start(t, natstest.Options{MaxPayload: 4096})
	_, js := natstest.Connect(t, srv.ClientURL())
	if err := bus.Provision(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	big := []byte(`"` + strings.Repeat("x", 5000) + `"`)
	cases := []struct {
		name, kind string
		body       []byte
		opts       []bus.Option
		wantMsg    string
	}{
		{"queue upper case", "k", []byte(`{}`), []bus.Option{bus.OnQueue("High")}, `queue name "High" may only use a-z, 0-9, _ and -`},
		{"queue empty", "k", []byte(`{}`), []bus.Option{bus.OnQueue("")}, "queue name is empty"},
		{"kind with dot", "a.b", []byte(`{}`), nil, `kind name "a.b" may only use`},
		{"kind wildcard", "*", []byte(`{}`), nil, `kind name "*" may only use`},
		{"body not JSON", "k", []byte(`{"a":`), nil, "body of k job is not valid JSON"},
		{"body not UTF-8", "k", []byte("{\"a\":\"\xff\"}"), nil, "body of k job is not valid UTF-8"},
		{"body over max payload", "k", big, nil, "the NATS server's max_payload is 4096 bytes"},
		{"body in its dead letter's room", "k", []byte(`"` + strings.Repeat("x", 3500) + `"`), nil, "of which 1024 are kept for the headers of the job's dead letter"},
		{"tries zero", "k", []byte(`{}`), []bus.Option{bus.Tries(0)}, "tries is 0; it must be at least 1"},
		{"timeout negative", "k", []byte(`{}`), []bus.Option{bus.Timeout(-time.Second)}, "timeout is -1s"},
		{"ID with a line break", "k", []byte(`{}`), []bus.Option{bus.JobID("a\nb")}, `job ID "a\nb" holds the control character U+000A at byte 1`},
		{"ID with a tab", "k", []byte(`{}`), []bus.Option{bus.JobID("a\tb")}, `control character U+0009`},
		{"ID with NUL", "k", []byte(`{}`), []bus.Option{bus.JobID("\x00")}, `control character U+0000 at byte 0`},
		{"ID with DEL", "k", []byte(`{}`), []bus.Option{bus.JobID("a\x7f")}, `control character U+007F`},
		{"ID with a C1 control", "k", []byte(`{}`), []bus.Option{bus.JobID("é\u0085")}, `control character U+0085 at byte 2`},
		{"delayed job, ID with a line break", "k", []byte(`{}`), []bus.Option{bus.JobID("a\r\nb"), bus.Delay(time.Hour)}, `control character U+000D`},
		{"ready after 2262", "k", []byte(`{}`), []bus.Option{bus.At(time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC))}, "the job would be ready at 9999-12-31T23:59:59Z, after 2262-04-11T23:47:16Z"},
		{"delayed past 2262", "k", []byte(`{}`), []bus.Option{bus.Delay(2562047 * time.Hour)}, "the last time NATS schedules handle"},
		{"ID not UTF-8", "k", []byte(`{}`), []bus.Option{bus.JobID("ok\xffid")}, `job ID "ok\xffid" is not UTF-8 (byte 2)`},
		{"ID that is a path step", "k", []byte(`{}`), []bus.Option{bus.JobID("..")}, `job ID ".." is a path step`},
		{"ID that is the current path", "k", []byte(`{}`), []bus.Option{bus.JobID(".")}, `job ID "." is a path step`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := d.DispatchJSON(ctx, c.kind, c.body, c.opts...)
			if !errors.Is(err, bus.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), c.wantMsg) {
				t.Fatalf("err = %q, want it to contain %q", err, c.wantMsg)
			}
		})
	}
	s, _ := js.Stream(ctx, bus.JobsStream)
	if info, _ := s.Info(ctx); info.State.Msgs != 0 {
		t.Fatalf("refused jobs were stored: %d messages", info.State.Msgs)
	}
}

func TestDispatchWithoutStreamIsAnError(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	d, _ := bus.NewDispatcher(js, bus.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := d.Dispatch(ctx, welcomeEmail{UserID: 1})
	if !errors.Is(err, bus.ErrNotAcknowledged) || !strings.Contains(err.Error(), "is the JOBS stream provisioned?") {
		t.Fatalf("err = %v, want ErrNotAcknowledged naming the missing stream", err)
	}
}

// A dispatch that gets no answer in time (here a subscriber that takes the
// subject but never answers, as a server that cannot write or a stream
// without quorum would) is ErrNotAcknowledged, and its message says what
// that can mean and that dispatching again with the same ID is safe.
func TestDispatchWithoutAnswerSaysWhy(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	nc, js := natstest.Connect(t, srv.ClientURL())
	sub, err := nc.SubscribeSync("jobs.>")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	d, _ := bus.NewDispatcher(js, bus.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	id, err := d.Dispatch(ctx, welcomeEmail{UserID: 1}, bus.JobID("welcome-1"))
	if !errors.Is(err, bus.ErrNotAcknowledged) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want ErrNotAcknowledged wrapping context.DeadlineExceeded", err)
	}
	if id != "welcome-1" { // the job may be stored: its ID is what to dispatch again with
		t.Errorf("id = %q with ErrNotAcknowledged, want welcome-1", id)
	}
	for _, want := range []string{"disk full", "lost its quorum", "dispatching it again with the same job ID is safe"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %q, want it to say %q", err, want)
		}
	}
	if _, err := sub.NextMsg(time.Second); err != nil {
		t.Errorf("the job never reached the subject: %v", err)
	}
}

func TestDedupeWithinWindow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "default")
	for range 3 {
		id, err := d.Dispatch(ctx, welcomeEmail{UserID: 1}, bus.JobID("welcome-1"))
		if err != nil || id != "welcome-1" {
			t.Fatalf("dispatch: %q %v", id, err)
		}
	}
	if n := natstest.StreamMsgs(t, js, bus.JobsStream); n != 1 {
		t.Fatalf("JOBS holds %d messages after 3 dispatches of one ID, want 1", n)
	}
}

func TestDispatchManyStoresEveryJob(t *testing.T) {
	t.Parallel()
	js, d := setup(t, bus.Config{}, "default")
	dispatchManyStoresAll(t, js, d, 10_000)
}

// dispatchManyStoresAll dispatches n jobs in one DispatchMany and checks
// that each got its own ID and JOBS holds exactly n messages.
func dispatchManyStoresAll(t *testing.T, js jetstream.JetStream, d *bus.Dispatcher, n int) {
	t.Helper()
	jobs := make([]bus.DispatchManyParams, n)
	for i := range jobs {
		jobs[i] = bus.DispatchManyParams{Args: welcomeEmail{UserID: int64(i)}}
	}
	ids, err := d.DispatchMany(context.Background(), jobs...)
	if err != nil {
		t.Fatalf("DispatchMany: %v", err)
	}
	seen := map[string]bool{}
	for _, id := range ids {
		seen[id] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct IDs, want %d", len(seen), n)
	}
	if got := natstest.StreamMsgs(t, js, bus.JobsStream); got != uint64(n) {
		t.Fatalf("JOBS holds %d messages, want %d", got, n)
	}
}

func TestDispatchManyReportsPerJobErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "default")
	ids, err := d.DispatchMany(ctx,
		bus.DispatchManyParams{Args: welcomeEmail{UserID: 1}},
		bus.DispatchManyParams{Args: welcomeEmail{UserID: 2}, Opts: []bus.Option{bus.OnQueue("Bad Queue")}},
		bus.DispatchManyParams{Args: welcomeEmail{UserID: 3}},
	)
	var be *bus.BatchError
	if !errors.As(err, &be) || be.Failed != 1 || be.Errs[1] == nil || be.Errs[0] != nil || be.Errs[2] != nil {
		t.Fatalf("err = %v, want a BatchError for job 1 only", err)
	}
	if ids[0] == "" || ids[2] == "" || ids[1] != "" {
		t.Fatalf("ids = %q", ids)
	}
	if n := natstest.StreamMsgs(t, js, bus.JobsStream); n != 2 {
		t.Fatalf("JOBS holds %d messages, want 2", n)
	}
}

func TestConcurrentProvisioningMakesOneTopology(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		_, js := natstest.Connect(t, srv.ClientURL())
		wg.Go(func() {
			errs <- bus.ProvisionQueues(ctx, js, bus.Config{}, "high", "default")
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("provisioner: %v", err)
		}
	}
	_, js := natstest.Connect(t, srv.ClientURL())
	var names []string
	for n := range js.StreamNames(ctx).Name() {
		names = append(names, n)
	}
	if len(names) != 3 {
		t.Fatalf("streams = %v, want JOBS, DLQ and %s", names, bus.HistoryStream)
	}
	s, _ := js.Stream(ctx, bus.JobsStream)
	var consumers []string
	for n := range s.ConsumerNames(ctx).Name() {
		consumers = append(consumers, n)
	}
	if len(consumers) != 2 {
		t.Fatalf("consumers = %v, want q-high and q-default", consumers)
	}
}

func TestProvisionUpdatesChangedSettings(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, _ := setup(t, bus.Config{})
	if err := bus.Provision(ctx, js, bus.Config{FailedRetention: time.Hour, DuplicateWindow: time.Minute}); err != nil {
		t.Fatalf("re-provision with new settings: %v", err)
	}
	s, _ := js.Stream(ctx, bus.DLQStream)
	if got := s.CachedInfo().Config.MaxAge; got != time.Hour {
		t.Fatalf("DLQ MaxAge = %s, want 1h", got)
	}
	s, _ = js.Stream(ctx, bus.JobsStream)
	if got := s.CachedInfo().Config.Duplicates; got != time.Minute {
		t.Fatalf("JOBS duplicate window = %s, want 1m", got)
	}
	err := bus.Provision(ctx, js, bus.Config{MemoryStorage: true})
	if err == nil || !strings.Contains(err.Error(), "cannot change it in place") {
		t.Fatalf("storage change: err = %v, want a clear refusal", err)
	}
}

func TestEnsureQueuesNeverRewritesAnExistingTopology(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, _ := setup(t, bus.Config{FailedRetention: time.Hour})
	if err := bus.EnsureQueues(ctx, js, bus.Config{}, "default"); err != nil {
		t.Fatal(err)
	}
	s, _ := js.Stream(ctx, bus.DLQStream)
	if got := s.CachedInfo().Config.MaxAge; got != time.Hour {
		t.Fatalf("a worker's default settings changed DLQ MaxAge to %s", got)
	}
	if _, err := js.Consumer(ctx, bus.JobsStream, wire.ConsumerName("default")); err != nil {
		t.Fatalf("consumer not created: %v", err)
	}
}

// waitReady waits until the Inspector counts want ready jobs in each
// queue named. The server counts a stored job as pending on a consumer a
// moment after it acknowledges the store (its consumers are told from a
// goroutine of their own), so a count read straight after a dispatch can
// be short by the jobs of the last few microseconds.
func waitReady(t *testing.T, in *bus.Inspector, want map[string]uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := in.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]uint64{}
		for _, q := range st.Queues {
			if _, ok := want[q.Queue]; ok {
				got[q.Queue] = q.Ready
			}
		}
		if maps.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ready jobs per queue: %v, want %v", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
