package bus_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

func TestDeadLetterCarriesEveryHeaderAndIsStoredOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "default")
	id, err := d.Dispatch(ctx, welcomeEmail{UserID: 9}, bus.Tries(2), bus.Timeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	m := fetchOne(t, js, "default", 2*time.Second)
	job, err := bus.ParseJob(m)
	if err != nil {
		t.Fatal(err)
	}
	failedAt := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	reason := "boom\nsecond line with a \\ backslash"
	// Two processes dead-lettering the same delivery at once store one letter.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := bus.DeadLetter(ctx, js, job, bus.Failure{Reason: reason, Attempts: 2, At: failedAt}); err != nil {
				t.Errorf("DeadLetter: %v", err)
			}
		})
	}
	wg.Wait()
	if n := natstest.StreamMsgs(t, js, bus.DLQStream); n != 1 {
		t.Fatalf("DLQ holds %d messages, want 1", n)
	}
	s, _ := js.Stream(ctx, bus.DLQStream)
	dl, err := s.GetLastMsgForSubject(ctx, bus.DLQFilterForID(id))
	if err != nil {
		t.Fatalf("find dead letter by ID: %v", err)
	}
	if dl.Subject != "dlq.default.send-welcome-email."+id || string(dl.Data) != `{"user_id":9}` {
		t.Fatalf("dead letter subject %q body %s", dl.Subject, dl.Data)
	}
	want := map[string]string{
		"Nats-Msg-Id":        "JOBS:" + itoa(job.Seq),
		"Jetfleet-Job-Id":    id,
		"Jetfleet-Origin":    "JOBS:" + itoa(job.Seq),
		"Jetfleet-Attempts":  "2",
		"Jetfleet-Failed-At": "2026-11-27T10:00:00Z",
		"Jetfleet-Tries":     "2",
		"Jetfleet-Timeout":   "1m0s",
	}
	for k, v := range want {
		if got := dl.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if got := bus.DecodeHeaderText(dl.Header.Get(bus.HeaderError)); got != reason {
		t.Errorf("error header decodes to %q, want %q", got, reason)
	}
}

func TestHeaderTextRoundTripsAndTruncates(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "plain", "a\nb", `back\slash`, `\n literal`, "crlf\r\nend"} {
		want := strings.ReplaceAll(s, "\r\n", "\n")
		if got := bus.DecodeHeaderText(bus.EncodeHeaderText(s, 1<<10)); got != want {
			t.Errorf("round trip %q = %q", s, got)
		}
	}
	long := bus.EncodeHeaderText(strings.Repeat("x", 5000), 200)
	if len(long) > 200 || !strings.HasSuffix(long, "[truncated]") {
		t.Errorf("truncated header is %d bytes: %q…", len(long), long[:20])
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
