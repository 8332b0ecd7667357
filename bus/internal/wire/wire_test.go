package wire_test

import (
	"context"
	"errors"
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

// The names wire repeats unexported must be bus's: checked through what
// wire builds with them.
func TestWireAgreesWithBusContract(t *testing.T) {
	checks := []struct{ what, got, want string }{
		{"job subject", wire.JobSubject("q", "k"), bus.JobsPrefix + ".q.k"},
		{"queue filter", wire.QueueFilter("q"), bus.JobsPrefix + ".q.>"},
		{"dlq subject", wire.DLQSubject("q", "k", "id"), bus.DLQPrefix + ".q.k.id"},
		{"dlq filter", wire.DLQFilterForID("id"), bus.DLQPrefix + ".*.*.id"},
		{"delay subject", wire.DelaySubject("q", "id"), bus.SchedulePrefix + ".delay.q.id"},
		{"jobs stream", wire.JobsStreamConfig(wire.Topology{}).Name, bus.JobsStream},
		{"dlq stream", wire.DLQStreamConfig(wire.Topology{}).Name, bus.DLQStream},
		{"pause bucket", wire.PauseBucketConfig(0).Bucket, bus.PauseBucket},
		{"workers bucket", wire.WorkersBucketConfig(0).Bucket, bus.WorkersBucket},
		{"workers bucket TTL", wire.WorkersBucketConfig(0).TTL.String(), bus.WorkerRecordTTL.String()},
		{"origin", wire.Origin(7), bus.JobsStream + ":7"},
		{"history stream", wire.HistoryStreamConfig(wire.Topology{}).Name, bus.HistoryStream},
		{"status subject", wire.StatusSubject("q", "k", "id"), bus.StatusPrefix + ".q.k.id"},
		{"status subject of bus", bus.StatusSubject("q", "k", "a.b"), wire.StatusSubject("q", "k", "a.b")},
		{"tag subject", wire.TagSubject("user:7", "id"), bus.TagsPrefix + ".user:7.id"},
		{"cancel subject", wire.CancelSubject("id"), bus.CancelPrefix + ".id"},
		{"locate subject", wire.LocateSubject("id"), bus.LocatePrefix + ".id"},
		{"queue cancel subject", wire.QueueCancelSubject("q"), bus.QueueCancelPrefix + ".q"},
		{"id token", bus.IDToken("a b"), wire.IDToken("a b")},
		{"unique bucket", wire.UniqueBucketConfig(0).Bucket, bus.UniqueBucket},
		{"limits bucket", wire.LimitsBucketConfig(0).Bucket, bus.LimitsBucket},
		{"max key length", strconv.Itoa(wire.MaxKeyLen), strconv.Itoa(bus.MaxKeyLen)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: wire has %q, bus %q", c.what, c.got, c.want)
		}
	}
	if !strings.Contains(wire.JobsStreamConfig(wire.Topology{}).Subjects[1], bus.SchedulePrefix) {
		t.Errorf("JOBS subjects %v miss %s", wire.JobsStreamConfig(wire.Topology{}).Subjects, bus.SchedulePrefix)
	}
	if 3*wire.MaxPresenceInterval > bus.WorkerRecordTTL {
		t.Errorf("MaxPresenceInterval %s leaves no room for two missed writes in %s", wire.MaxPresenceInterval, bus.WorkerRecordTTL)
	}
}

func TestTopologyDefaults(t *testing.T) {
	sc := wire.DLQStreamConfig(wire.Topology{})
	if sc.Replicas != 1 || sc.MaxAge != 7*24*time.Hour || sc.Duplicates != 2*time.Minute || sc.Storage != jetstream.FileStorage {
		t.Errorf("DLQ with defaults = %+v", sc)
	}
	sc = wire.DLQStreamConfig(wire.Topology{FailedRetention: time.Minute, MemoryStorage: true, Replicas: 3})
	if sc.Duplicates != time.Minute || sc.Replicas != 3 || sc.Storage != jetstream.MemoryStorage {
		t.Errorf("DLQ's duplicate window must not exceed its MaxAge: %+v", sc)
	}
	if cc := wire.QueueConsumerConfig(wire.Topology{}, "high"); cc.Durable != "q-high" || cc.AckWait != 30*time.Second || cc.MaxDeliver != -1 {
		t.Errorf("consumer with defaults = %+v", cc)
	}
}

type welcomeEmail struct {
	UserID int64 `json:"user_id"`
}

func (welcomeEmail) Kind() string { return "send-welcome-email" }

func TestDeadLetterCarriesEveryHeaderAndIsStoredOnce(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	if err := bus.ProvisionQueues(ctx, js, bus.Config{}, "default"); err != nil {
		t.Fatal(err)
	}
	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := d.Dispatch(ctx, welcomeEmail{UserID: 9}, bus.Tries(2), bus.Timeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	c, err := js.Consumer(ctx, bus.JobsStream, wire.ConsumerName("default"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Next(jetstream.FetchMaxWait(2 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	job, err := bus.ParseJob(m)
	if err != nil {
		t.Fatal(err)
	}
	failedAt := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	reason := "boom\nsecond line with a \\ backslash"
	dl := wire.DeadLetter{
		ID: job.ID, Queue: job.Queue, Kind: job.Kind, Seq: job.Seq, Header: job.Header, Body: job.Body,
		Reason: reason, Attempts: 2, At: failedAt,
	}
	// Two processes dead-lettering the same delivery at once store one letter.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := wire.PublishDeadLetter(ctx, js, dl); err != nil {
				t.Errorf("PublishDeadLetter: %v", err)
			}
		})
	}
	wg.Wait()
	if n := natstest.StreamMsgs(t, js, bus.DLQStream); n != 1 {
		t.Fatalf("DLQ holds %d messages, want 1", n)
	}
	s, _ := js.Stream(ctx, bus.DLQStream)
	got, err := s.GetLastMsgForSubject(ctx, wire.DLQFilterForID(id))
	if err != nil {
		t.Fatalf("find dead letter by ID: %v", err)
	}
	if got.Subject != "dlq.default.send-welcome-email."+id || string(got.Data) != `{"user_id":9}` {
		t.Fatalf("dead letter subject %q body %s", got.Subject, got.Data)
	}
	seq := strconv.FormatUint(job.Seq, 10)
	want := map[string]string{
		"Nats-Msg-Id":        "JOBS:" + seq,
		"Jetfleet-Job-Id":    id,
		"Jetfleet-Origin":    "JOBS:" + seq,
		"Jetfleet-Attempts":  "2",
		"Jetfleet-Failed-At": "2026-11-27T10:00:00Z",
		"Jetfleet-Tries":     "2",
		"Jetfleet-Timeout":   "1m0s",
		"Jetfleet-Error":     `boom\nsecond line with a \\ backslash`,
	}
	for k, v := range want {
		if got := got.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if got := wire.DecodeHeaderText(got.Header.Get(bus.HeaderError)); got != reason {
		t.Errorf("error header decodes to %q, want %q", got, reason)
	}
}

// TestDeadLetterOfAJobWithHugeHeadersDropsThemAndSaysSo: a raw job whose
// headers are just under JetStream's 64 KiB is stored, but its letter
// could not carry them beside its own: the letter drops the largest,
// names it, is stored, and cannot be retried.
func TestDeadLetterOfAJobWithHugeHeadersDropsThemAndSaysSo(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	if err := bus.ProvisionQueues(ctx, js, bus.Config{}, "default"); err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg("jobs.default.send-welcome-email.big-1")
	msg.Header.Set("X-Big", strings.Repeat("x", 65_300))
	msg.Header.Set("Jetfleet-Tries", "0")
	msg.Data = []byte(`{}`)
	ack, err := js.PublishMsg(ctx, msg)
	if err != nil {
		t.Fatalf("the server refused the raw job itself: %v", err)
	}
	dl := wire.DeadLetter{ID: "big-1", Queue: "default", Kind: "send-welcome-email", Seq: ack.Sequence,
		Header: msg.Header, Body: msg.Data, Reason: "malformed job: Jetfleet-Tries 0", Attempts: 1}
	if err := wire.PublishDeadLetter(ctx, js, dl); err != nil {
		t.Fatalf("PublishDeadLetter: %v", err)
	}
	s, _ := js.Stream(ctx, bus.DLQStream)
	got, err := s.GetLastMsgForSubject(ctx, wire.DLQFilterForID("big-1"))
	if err != nil {
		t.Fatal(err)
	}
	reason := wire.DecodeHeaderText(got.Header.Get(bus.HeaderError))
	if omitted := got.Header.Get(bus.HeaderHeadersOmitted); !strings.HasPrefix(omitted, "X-Big (") ||
		got.Header.Get("X-Big") != "" || got.Header.Get("Jetfleet-Tries") != "0" ||
		!strings.Contains(reason, "X-Big") || !strings.HasSuffix(reason, "malformed job: Jetfleet-Tries 0") {
		t.Fatalf("letter headers %s = %q, X-Big kept: %v, reason %q", bus.HeaderHeadersOmitted, omitted, got.Header.Get("X-Big") != "", reason)
	}
	in, err := bus.NewInspector(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Retry(ctx, "big-1"); !errors.Is(err, bus.ErrInvalid) || !strings.Contains(err.Error(), "X-Big") {
		t.Fatalf("retry of a letter without its headers = %v, want ErrInvalid naming X-Big", err)
	}
}

func TestDeadLetterOfAnUnparsableJobGoesToUnknown(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	if err := bus.Provision(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	id := "a.b c"
	err := wire.PublishDeadLetter(ctx, js, wire.DeadLetter{ID: id, Queue: "Bad.Queue", Seq: 3, Body: []byte(`{}`), Reason: "bad subject"})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := js.Stream(ctx, bus.DLQStream)
	got, err := s.GetLastMsgForSubject(ctx, wire.DLQFilterForID(id))
	if err != nil {
		t.Fatal(err)
	}
	if want := "dlq.unknown.unknown." + wire.IDToken(id); got.Subject != want || !strings.HasPrefix(wire.IDToken(id), "h-") {
		t.Fatalf("subject %q, want %q with a hashed ID", got.Subject, want)
	}
	if got.Header.Get(bus.HeaderJobID) != id {
		t.Fatalf("job ID header %q, want %q", got.Header.Get(bus.HeaderJobID), id)
	}
}

func TestHeaderTextRoundTripsAndTruncates(t *testing.T) {
	for _, s := range []string{"", "plain", "a\nb", `back\slash`, `\n literal`, "crlf\r\nend"} {
		want := strings.ReplaceAll(s, "\r\n", "\n")
		if got := wire.DecodeHeaderText(wire.EncodeHeaderText(s, 1<<10)); got != want {
			t.Errorf("round trip %q = %q", s, got)
		}
	}
	long := wire.EncodeHeaderText(strings.Repeat("x", 5000), 200)
	if len(long) > 200 || !strings.HasSuffix(long, "[truncated]") {
		t.Errorf("truncated header is %d bytes: %q…", len(long), long[:20])
	}
}

func TestParseJobSubjectAndBackoff(t *testing.T) {
	if q, k, err := wire.ParseJobSubject("jobs.high.resize-image"); err != nil || q != "high" || k != "resize-image" {
		t.Errorf("ParseJobSubject = %q, %q, %v", q, k, err)
	}
	for _, bad := range []string{"jobs.high", "dlq.high.k", "jobs.High.k", "jobs.high.k.x.y"} {
		if _, _, err := wire.ParseJobSubject(bad); !errors.Is(err, bus.ErrInvalid) {
			t.Errorf("ParseJobSubject(%q) = %v, want an ErrInvalid", bad, err)
		}
	}
	delays, err := wire.ParseBackoff("1s, 90 ,1m")
	if err != nil || wire.FormatBackoff(delays) != "1s,1m30s,1m0s" {
		t.Errorf("ParseBackoff = %v, %v", delays, err)
	}
	if _, err := wire.ParseBackoff("1s,-2s"); err == nil {
		t.Error("a negative backoff was accepted")
	}
}
