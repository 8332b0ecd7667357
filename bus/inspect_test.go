package bus_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/bus/internal/wire"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

type resizeImage struct {
	ItemID int64 `json:"item_id"`
}

func (resizeImage) Kind() string { return "resize-image" }

// failJob dispatches args on queue and dead-letters it the way a worker
// does (DeadLetter, then Term), returning its ID.
func failJob(t *testing.T, js jetstream.JetStream, d *bus.Dispatcher, queue string, args bus.Args, reason string, opts ...bus.Option) string {
	t.Helper()
	ctx := context.Background()
	id, err := d.Dispatch(ctx, args, append(opts, bus.OnQueue(queue))...)
	if err != nil {
		t.Fatal(err)
	}
	m := fetchOne(t, js, queue, 2*time.Second)
	if m == nil {
		t.Fatalf("job %s not delivered", id)
	}
	job, err := bus.ParseJob(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := deadLetter(ctx, js, job, reason, 3); err != nil {
		t.Fatal(err)
	}
	if err := m.Term(); err != nil {
		t.Fatal(err)
	}
	return id
}

func newInspector(t *testing.T, js jetstream.JetStream) *bus.Inspector {
	t.Helper()
	in, err := bus.NewInspector(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func ids(jobs []*bus.FailedJob) []string {
	var out []string
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	return out
}

func TestFailedJobsListsNewestFirstAndFilters(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "high", "default")
	in := newInspector(t, js)
	if got, err := in.FailedJobs(ctx, bus.FailedFilter{}); err != nil || len(got) != 0 {
		t.Fatalf("empty DLQ lists %v, %v", got, err)
	}
	a := failJob(t, js, d, "high", welcomeEmail{UserID: 1}, "a")
	b := failJob(t, js, d, "default", resizeImage{ItemID: 2}, "b")
	time.Sleep(20 * time.Millisecond)
	since := time.Now()
	c := failJob(t, js, d, "high", resizeImage{ItemID: 3}, "c")
	e := failJob(t, js, d, "default", welcomeEmail{UserID: 4}, "e")
	f := failJob(t, js, d, "high", welcomeEmail{UserID: 5}, "f")

	cases := []struct {
		name   string
		filter bus.FailedFilter
		want   []string
	}{
		{"all", bus.FailedFilter{}, []string{f, e, c, b, a}},
		{"queue", bus.FailedFilter{Queue: "high"}, []string{f, c, a}},
		{"kind", bus.FailedFilter{Kind: "resize-image"}, []string{c, b}},
		{"queue and kind", bus.FailedFilter{Queue: "high", Kind: "send-welcome-email"}, []string{f, a}},
		{"limit", bus.FailedFilter{Limit: 2}, []string{f, e}},
		{"since", bus.FailedFilter{Since: since}, []string{f, e, c}},
		{"since and queue", bus.FailedFilter{Since: since, Queue: "default"}, []string{e}},
		{"unknown queue", bus.FailedFilter{Queue: "low"}, nil},
	}
	for _, tc := range cases {
		got, err := in.FailedJobs(ctx, tc.filter)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if strings.Join(ids(got), ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: got %v, want %v", tc.name, ids(got), tc.want)
		}
	}
	if _, err := in.FailedJobs(ctx, bus.FailedFilter{Queue: "Bad.Queue"}); !errors.Is(err, bus.ErrInvalid) {
		t.Errorf("bad queue name: err = %v, want ErrInvalid", err)
	}
}

func TestFailedJobByIDHasEverything(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "high")
	in := newInspector(t, js)
	reason := "boom\n  at line 2"
	id := failJob(t, js, d, "high", welcomeEmail{UserID: 7}, reason, bus.Tries(4))
	failJob(t, js, d, "high", welcomeEmail{UserID: 8}, "other")

	fj, err := in.FailedJob(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if fj.ID != id || fj.Queue != "high" || fj.Kind != "send-welcome-email" || fj.Attempts != 3 ||
		fj.Error != reason || string(fj.Body) != `{"user_id":7}` || !strings.HasPrefix(fj.Origin, "JOBS:") ||
		fj.Subject != "dlq.high.send-welcome-email."+id || fj.Seq != 1 {
		t.Fatalf("failed job = %+v", fj)
	}
	if fj.Header.Get(bus.HeaderTries) != "4" || fj.Header.Get(bus.HeaderMsgID) != fj.Origin {
		t.Errorf("headers = %v", fj.Header)
	}
	if fj.Header.Get(jetstream.SequenceHeader) != "" {
		t.Errorf("the direct get's own headers leak into the job's: %v", fj.Header)
	}
	if time.Since(fj.FailedAt) > time.Minute {
		t.Errorf("failed at %s", fj.FailedAt)
	}
	_, err = in.FailedJob(ctx, "no-such-job")
	if !errors.Is(err, bus.ErrUnknownJob) || !strings.Contains(err.Error(), `"no-such-job"`) {
		t.Fatalf("unknown ID: err = %v", err)
	}
}

func TestRetryPutsTheJobBackAndRemovesTheDeadLetter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "high", "default")
	in := newInspector(t, js)
	id := failJob(t, js, d, "high", welcomeEmail{UserID: 7}, "boom", bus.Tries(4), bus.Timeout(time.Minute))
	keep := failJob(t, js, d, "default", welcomeEmail{UserID: 8}, "boom")
	fj, err := in.FailedJob(ctx, id)
	if err != nil {
		t.Fatal(err)
	}

	n, err := in.Retry(ctx, id, "no-such-job")
	if n != 1 || !errors.Is(err, bus.ErrUnknownJob) {
		t.Fatalf("Retry = %d, %v; want 1 and an unknown-ID error", n, err)
	}
	m := fetchOne(t, js, "high", 2*time.Second)
	if m == nil {
		t.Fatal("retried job not delivered")
	}
	assertHeaders(t, m.Headers(), map[string][]string{
		"Jetfleet-Job-Id":  {id},
		"Nats-Msg-Id":      {id + ":retry:" + strconv.FormatUint(fj.Seq, 10)},
		"Jetfleet-Tries":   {"4"},
		"Jetfleet-Timeout": {"1m0s"},
	})
	job, err := bus.ParseJob(m)
	if err != nil {
		t.Fatal(err)
	}
	if job.ID != id || job.Attempt != 1 || string(job.Body) != `{"user_id":7}` || job.Kind != "send-welcome-email" {
		t.Fatalf("retried job = %+v", job)
	}
	if _, err := in.FailedJob(ctx, id); !errors.Is(err, bus.ErrUnknownJob) {
		t.Fatalf("dead letter still there after retry: %v", err)
	}
	if _, err := in.FailedJob(ctx, keep); err != nil {
		t.Fatalf("the other dead letter went too: %v", err)
	}
}

func TestRetryAllByQueueAndKind(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "high", "default")
	in := newInspector(t, js)
	failJob(t, js, d, "high", welcomeEmail{UserID: 1}, "x")
	failJob(t, js, d, "high", resizeImage{ItemID: 2}, "x")
	failJob(t, js, d, "default", welcomeEmail{UserID: 3}, "x")
	failJob(t, js, d, "default", welcomeEmail{UserID: 4}, "x")

	if n, err := in.RetryAll(ctx, bus.FailedFilter{Queue: "high", Kind: "resize-image"}); n != 1 || err != nil {
		t.Fatalf("RetryAll(high, resize-image) = %d, %v", n, err)
	}
	if n, err := in.RetryAll(ctx, bus.FailedFilter{Queue: "default"}); n != 2 || err != nil {
		t.Fatalf("RetryAll(default) = %d, %v", n, err)
	}
	left, _ := in.FailedJobs(ctx, bus.FailedFilter{})
	if len(left) != 1 || left[0].Kind != "send-welcome-email" || left[0].Queue != "high" {
		t.Fatalf("left in DLQ: %+v", left)
	}
	if n := natstest.StreamMsgs(t, js, bus.JobsStream); n != 3 {
		t.Fatalf("JOBS holds %d jobs, want the 3 retried", n)
	}
	if n, err := in.RetryAll(ctx, bus.FailedFilter{}); n != 1 || err != nil {
		t.Fatalf("RetryAll() = %d, %v", n, err)
	}
	if n := natstest.StreamMsgs(t, js, bus.DLQStream); n != 0 {
		t.Fatalf("DLQ holds %d after retrying all", n)
	}
}

// A dead letter no worker would be handed is not retried: jobs published
// on a subject that broke the naming rule are dead-lettered on the queue
// "unknown", and their retry would wait in JOBS, uncounted, never
// delivered. The retry says why, a retry of all retries the others, and
// the dead letter stays. A queue that lost its consumer (removed since)
// gets it back, as a dispatch to a new queue does.
func TestRetryRefusesADeadLetterNoWorkerWouldBeHanded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "default")
	in := newInspector(t, js)
	for i, q := range []string{"unknown", "removed"} {
		// Seq differs: a dead letter's Nats-Msg-Id is its origin.
		job := &bus.Job{ID: "on-" + q, Queue: q, Kind: "send-welcome-email", Seq: uint64(1000 + i), Header: nats.Header{}, Body: []byte("{}")}
		if err := deadLetter(ctx, js, job, "x", 0); err != nil {
			t.Fatal(err)
		}
	}
	good := failJob(t, js, d, "default", welcomeEmail{UserID: 1}, "x")

	n, err := in.Retry(ctx, "on-unknown")
	if n != 0 || !errors.Is(err, bus.ErrUnknownQueue) || !strings.Contains(err.Error(), "broke the naming rule") {
		t.Fatalf("Retry of a dead letter on the placeholder queue = %d, %v", n, err)
	}
	n, err = in.RetryAll(ctx, bus.FailedFilter{})
	if n != 2 || !errors.Is(err, bus.ErrUnknownQueue) || !strings.Contains(err.Error(), "1 failed job(s) not retried") {
		t.Fatalf("RetryAll = %d, %v; want 2 retried and the other named", n, err)
	}
	left, err := in.FailedJobs(ctx, bus.FailedFilter{})
	if err != nil || len(left) != 1 || left[0].ID != "on-unknown" {
		t.Fatalf("left in DLQ: %v, %v; want on-unknown only", ids(left), err)
	}
	if n := natstest.StreamMsgs(t, js, bus.JobsStream); n != 2 {
		t.Fatalf("JOBS holds %d jobs, want %s and on-removed", n, good)
	}
	queues, err := in.Queues(ctx)
	if err != nil || !slices.Contains(queues, "removed") || slices.Contains(queues, "unknown") {
		t.Fatalf("queues after the retries: %v, %v; want removed back and no unknown", queues, err)
	}
}

// A retry that stops between the republish and the removal of the dead
// letter (a crash) must leave a state where the job runs once and the next
// retry stores nothing new and removes the dead letter.
func TestInterruptedRetryIsTidiedByTheNextRetry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "high")
	id := failJob(t, js, d, "high", welcomeEmail{UserID: 7}, "boom")

	crashing := newInspector(t, js)
	crash := errors.New("killed after the republish")
	bus.SetAfterRepublish(crashing, func(*bus.FailedJob) error { return crash })
	if n, err := crashing.Retry(ctx, id); n != 0 || !errors.Is(err, crash) {
		t.Fatalf("interrupted Retry = %d, %v", n, err)
	}
	if natstest.StreamMsgs(t, js, bus.JobsStream) != 1 || natstest.StreamMsgs(t, js, bus.DLQStream) != 1 {
		t.Fatal("after the crash: want the job queued once and its dead letter kept")
	}

	in := newInspector(t, js)
	if n, err := in.Retry(ctx, id); n != 1 || err != nil {
		t.Fatalf("second Retry = %d, %v", n, err)
	}
	if n := natstest.StreamMsgs(t, js, bus.JobsStream); n != 1 {
		t.Fatalf("JOBS holds %d copies of the job after the second retry, want 1", n)
	}
	if n := natstest.StreamMsgs(t, js, bus.DLQStream); n != 0 {
		t.Fatalf("DLQ holds %d after the second retry, want 0", n)
	}
	m := fetchOne(t, js, "high", 2*time.Second)
	if m == nil {
		t.Fatal("job not delivered")
	}
	job, _ := bus.ParseJob(m)
	if job.ID != id || job.Attempt != 1 {
		t.Fatalf("job = %+v", job)
	}
	if err := m.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	// The server confirmed the ack and removed the job from the work
	// queue: a second copy would still be there, pending.
	if n := natstest.StreamMsgs(t, js, bus.JobsStream); n != 0 {
		t.Fatalf("JOBS holds %d messages after the job was acked, want 0: a second copy", n)
	}
	if c, err := js.Consumer(ctx, bus.JobsStream, bus.ConsumerName("high")); err != nil {
		t.Fatal(err)
	} else if info, err := c.Info(ctx); err != nil || info.NumPending != 0 || info.NumAckPending != 0 {
		t.Fatalf("consumer q-high: %+v, %v; want nothing pending", info, err)
	}
	if n, err := in.Retry(ctx, id); n != 0 || !errors.Is(err, bus.ErrUnknownJob) {
		t.Fatalf("third Retry = %d, %v; want unknown ID", n, err)
	}
}

func TestForgetRemovesExactlyOne(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "high")
	in := newInspector(t, js)
	a := failJob(t, js, d, "high", welcomeEmail{UserID: 1}, "x")
	b := failJob(t, js, d, "high", welcomeEmail{UserID: 2}, "x")
	c := failJob(t, js, d, "high", welcomeEmail{UserID: 3}, "x")
	if n, err := in.Forget(ctx, b); n != 1 || err != nil {
		t.Fatalf("Forget = %d, %v", n, err)
	}
	left, _ := in.FailedJobs(ctx, bus.FailedFilter{})
	if strings.Join(ids(left), ",") != c+","+a {
		t.Fatalf("left %v, want %v", ids(left), []string{c, a})
	}
	if n, err := in.Forget(ctx, b); n != 0 || !errors.Is(err, bus.ErrUnknownJob) {
		t.Fatalf("forget again = %d, %v", n, err)
	}
	if n := natstest.StreamMsgs(t, js, bus.JobsStream); n != 0 {
		t.Fatalf("forget queued something: JOBS holds %d", n)
	}
}

func TestFlushKeepsYoungerFailures(t *testing.T) {
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "high", "default")
	in := newInspector(t, js)
	failJob(t, js, d, "high", welcomeEmail{UserID: 1}, "old")
	failJob(t, js, d, "default", welcomeEmail{UserID: 2}, "old")
	failJob(t, js, d, "default", welcomeEmail{UserID: 3}, "old")
	time.Sleep(2 * time.Second)
	young := failJob(t, js, d, "high", welcomeEmail{UserID: 4}, "young")
	youngDefault := failJob(t, js, d, "default", welcomeEmail{UserID: 5}, "young")

	if n, err := in.Flush(ctx, time.Second, "default"); n != 2 || err != nil {
		t.Fatalf("Flush(1s, default) = %d, %v; want the 2 old ones of default", n, err)
	}
	if n, err := in.Flush(ctx, time.Second, ""); n != 1 || err != nil {
		t.Fatalf("Flush(1s) = %d, %v; want the old one of high", n, err)
	}
	left, _ := in.FailedJobs(ctx, bus.FailedFilter{})
	if strings.Join(ids(left), ",") != youngDefault+","+young {
		t.Fatalf("left %v", ids(left))
	}
	if n, err := in.Flush(ctx, 0, ""); n != 2 || err != nil {
		t.Fatalf("Flush(all) = %d, %v", n, err)
	}
	if n := natstest.StreamMsgs(t, js, bus.DLQStream); n != 0 {
		t.Fatalf("DLQ holds %d after flushing all", n)
	}
}

// deadLetter stores job in DLQ as a worker does after its last attempt.
func deadLetter(ctx context.Context, js jetstream.JetStream, job *bus.Job, reason string, attempts int) error {
	return wire.PublishDeadLetter(ctx, js, wire.DeadLetter{
		ID: job.ID, Queue: job.Queue, Kind: job.Kind, Seq: job.Seq, Header: job.Header, Body: job.Body,
		Reason: reason, Attempts: attempts,
	})
}
