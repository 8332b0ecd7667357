package bus_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/bus/internal/wire"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// bigDLQ is the size of the dead-letter backlog of the scale test and
// benchmark: the "100,000 failed jobs".
const bigDLQ = 100_000

func bigID(i int) string { return fmt.Sprintf("job-%06d", i) }

// fillDLQ stores n dead letters shaped as workers dead-letter them (wire.PublishDeadLetter), over
// three queues and two kinds, oldest first (bigID(0) is the oldest), with
// asynchronous publishes.
func fillDLQ(tb testing.TB, js jetstream.JetStream, n int) {
	tb.Helper()
	queues := []string{"high", "default", "low"}
	kinds := []string{"send-welcome-email", "resize-image"}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for i := range n {
		id := bigID(i)
		h := nats.Header{}
		h.Set(bus.HeaderMsgID, "JOBS:"+strconv.Itoa(i+1))
		h.Set(bus.HeaderJobID, id)
		h.Set(bus.HeaderOrigin, "JOBS:"+strconv.Itoa(i+1))
		h.Set(bus.HeaderAttempts, "3")
		h.Set(bus.HeaderFailedAt, now)
		h.Set(bus.HeaderError, `upstream said 503\n  at resize (images.go:42)`)
		msg := &nats.Msg{
			Subject: wire.DLQSubject(queues[i%3], kinds[i%2], id),
			Header:  h,
			Data:    []byte(`{"item_id":` + strconv.Itoa(i) + `,"paths":["a.jpg","b.jpg"]}`),
		}
		if _, err := js.PublishMsgAsync(msg); err != nil {
			tb.Fatalf("publish dead letter %d: %v", i, err)
		}
		// Wait for each batch, so a busy machine never stalls the publisher.
		if (i+1)%1000 == 0 || i == n-1 {
			awaitAcks(tb, js)
		}
	}
}

func awaitAcks(tb testing.TB, js jetstream.JetStream) {
	tb.Helper()
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		tb.Fatal("dead letters not acknowledged within a minute")
	}
}

func bigSetup(tb testing.TB) (jetstream.JetStream, *bus.Inspector) {
	tb.Helper()
	srv := natstest.Start(tb)
	_, js := natstest.Connect(tb, srv.ClientURL())
	if err := bus.ProvisionQueues(context.Background(), js, bus.Config{}, "high", "default", "low"); err != nil {
		tb.Fatal(err)
	}
	began := time.Now()
	fillDLQ(tb, js, bigDLQ)
	tb.Logf("stored %d dead letters in %s", bigDLQ, time.Since(began).Round(time.Millisecond))
	in, err := bus.NewInspector(js, bus.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	return js, in
}

// With 100,000 jobs in DLQ, show and retry of the oldest work (the
// benchmark below reports how long they take; tests never assert speed).
func TestOldestOf100kFailedJobs(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("fills DLQ with 100,000 dead letters")
	}
	ctx := context.Background()
	js, in := bigSetup(t)
	oldest := bigID(0)

	began := time.Now()
	fj, err := in.FailedJob(ctx, oldest)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("show of the oldest: %s", time.Since(began))
	if fj.ID != oldest || fj.Seq != 1 || fj.Queue != "high" || fj.Error != "upstream said 503\n  at resize (images.go:42)" {
		t.Fatalf("oldest = %+v", fj)
	}

	began = time.Now()
	if n, err := in.Retry(ctx, oldest); n != 1 || err != nil {
		t.Fatalf("Retry = %d, %v", n, err)
	}
	t.Logf("retry of the oldest: %s", time.Since(began))
	if n := natstest.StreamMsgs(t, js, bus.JobsStream); n != 1 {
		t.Fatalf("JOBS holds %d after the retry", n)
	}
	if _, err := in.FailedJob(ctx, oldest); err == nil {
		t.Fatal("the retried job is still in DLQ")
	}

	began = time.Now()
	newest, err := in.FailedJobs(ctx, bus.FailedFilter{Limit: 50})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("list of the newest 50: %s", time.Since(began))
	if len(newest) != 50 || newest[0].ID != bigID(bigDLQ-1) || newest[49].ID != bigID(bigDLQ-50) {
		t.Fatalf("newest 50 run from %s to %s", newest[0].ID, newest[len(newest)-1].ID)
	}
	lows, err := in.FailedJobs(ctx, bus.FailedFilter{Queue: "low", Kind: "resize-image", Limit: 3})
	if err != nil || len(lows) != 3 || lows[0].ID != bigID(99995) {
		t.Fatalf("newest low/resize-image: %v, %v", ids(lows), err)
	}

	began = time.Now()
	st, err := in.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stats: %s", time.Since(began))
	if st.FailedTotal != bigDLQ-1 || st.Queues[0].Queue != "default" || st.Queues[0].Failed != 33333 {
		t.Fatalf("stats = total %d, %+v", st.FailedTotal, st.Queues)
	}
}

// BenchmarkInspector100kDLQ reports the time of one show, retry, listing
// and stats against a DLQ of 100,000 dead letters (file storage), show and
// retry aimed at the oldest dead letter left, beside a raw direct get:
//
//	go test -run '^$' -bench Inspector100k -benchtime 200x ./bus
func BenchmarkInspector100kDLQ(b *testing.B) {
	ctx := context.Background()
	js, in := bigSetup(b)
	next := 0
	// The baseline: a raw nats.go direct get of the same dead letter by its
	// literal subject (which only a caller who knows queue and kind can use).
	b.Run("raw-get-oldest-by-literal-subject", func(b *testing.B) {
		s, err := js.Stream(ctx, bus.DLQStream)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := s.GetLastMsgForSubject(ctx, wire.DLQSubject("high", "send-welcome-email", bigID(0))); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("show-oldest", func(b *testing.B) {
		for b.Loop() {
			if _, err := in.FailedJob(ctx, bigID(next)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("retry-oldest", func(b *testing.B) {
		for b.Loop() {
			if next >= bigDLQ {
				b.Fatal("ran out of dead letters")
			}
			if _, err := in.Retry(ctx, bigID(next)); err != nil {
				b.Fatal(err)
			}
			next++
		}
	})
	b.Run("list-newest-50", func(b *testing.B) {
		for b.Loop() {
			if _, err := in.FailedJobs(ctx, bus.FailedFilter{Limit: 50}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("stats", func(b *testing.B) {
		for b.Loop() {
			if _, err := in.Stats(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}
