package bus_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// perState is how many jobs each state holds in BenchmarkJobLookup100k.
const perState = 100_000

type lookupArgs struct {
	N int `json:"n"`
}

func (lookupArgs) Kind() string { return "lookup" }

// dispatchIDs dispatches n jobs with the IDs id(i), in batches of 1000.
func dispatchIDs(tb testing.TB, d *bus.Dispatcher, n int, id func(int) string, opts ...bus.Option) {
	tb.Helper()
	for sent := 0; sent < n; sent += 1000 {
		batch := make([]bus.DispatchManyParams, min(1000, n-sent))
		for i := range batch {
			batch[i] = bus.DispatchManyParams{Args: lookupArgs{N: sent + i}, Opts: append([]bus.Option{bus.JobID(id(sent + i))}, opts...)}
		}
		if _, err := d.DispatchMany(context.Background(), batch...); err != nil {
			tb.Fatal(err)
		}
	}
}

// writeRecords stores n records in state as workers write them, with the
// IDs id(i).
func writeRecords(tb testing.TB, js jetstream.JetStream, n int, state bus.JobState, id func(int) string) {
	tb.Helper()
	now := time.Now()
	for i := range n {
		st := &bus.JobStatus{ID: id(i), Queue: "default", Kind: "lookup", State: state, At: now, Seq: uint64(i + 1), Attempt: 1, Tries: 3,
			EnqueuedAt: now, StartedAt: now, FinishedAt: now, RunTime: time.Millisecond, Worker: "vm:1", Body: []byte(`{"n":1}`)}
		if _, err := js.PublishMsgAsync(&nats.Msg{Subject: bus.StatusSubject(st.Queue, st.Kind, st.ID), Data: st.AppendJSON(nil)}); err != nil {
			tb.Fatal(err)
		}
		if (i+1)%1000 == 0 || i == n-1 {
			awaitAcks(tb, js)
		}
	}
}

// BenchmarkJobLookup100k is Inspector.Job with 100,000 jobs in each state
// on one file-storage server: ready (never delivered), delayed (an hour
// away), succeeded and cancelled (records in the history), dead (in DLQ);
// and one running job among them, on a worker of another queue. Each
// sub-benchmark looks up random IDs of its state and checks the state.
//
//	go test -run '^$' -bench JobLookup100k -benchtime 2000x ./bus
func BenchmarkJobLookup100k(b *testing.B) {
	srv := natstest.Start(b)
	_, js := natstest.Connect(b, srv.ClientURL())
	ctx := context.Background()
	if err := bus.ProvisionQueues(ctx, js, bus.Config{}, "default", "busy", "high", "low"); err != nil {
		b.Fatal(err)
	}
	d, _ := bus.NewDispatcher(js, bus.Config{})
	in, _ := bus.NewInspector(js, bus.Config{})
	began := time.Now()
	ids := map[bus.JobState]func(int) string{
		bus.JobReady:     func(i int) string { return fmt.Sprintf("ready-%06d", i) },
		bus.JobDelayed:   func(i int) string { return fmt.Sprintf("delayed-%06d", i) },
		bus.JobSucceeded: func(i int) string { return fmt.Sprintf("done-%06d", i) },
		bus.JobCancelled: func(i int) string { return fmt.Sprintf("cancelled-%06d", i) },
		bus.JobDead:      bigID,
	}
	dispatchIDs(b, d, perState, ids[bus.JobReady])
	dispatchIDs(b, d, perState, ids[bus.JobDelayed], bus.Delay(time.Hour))
	writeRecords(b, js, perState, bus.JobSucceeded, ids[bus.JobSucceeded])
	writeRecords(b, js, perState, bus.JobCancelled, ids[bus.JobCancelled])
	fillDLQ(b, js, perState)
	b.Logf("stored %d jobs in each of 5 states in %s", perState, time.Since(began).Round(time.Millisecond))
	running := startRunning(b, js, d)

	states := []bus.JobState{bus.JobReady, bus.JobDelayed, bus.JobSucceeded, bus.JobCancelled, bus.JobDead}
	for _, state := range states {
		b.Run(string(state), func(b *testing.B) {
			for b.Loop() {
				id := ids[state](rand.IntN(perState))
				st, err := in.Job(ctx, id)
				if err != nil || st.State != state || st.ID != id {
					b.Fatalf("Job(%s) = %+v, %v; want %s", id, st, err, state)
				}
			}
		})
	}
	b.Run("running", func(b *testing.B) {
		for b.Loop() {
			if st, err := in.Job(ctx, running); err != nil || st.State != bus.JobRunning {
				b.Fatalf("Job(%s) = %+v, %v", running, st, err)
			}
		}
	})
	b.Run("unknown", func(b *testing.B) {
		for b.Loop() {
			if _, err := in.Job(ctx, "no-such-job"); err == nil {
				b.Fatal("an unknown job was found")
			}
		}
	})
}

// startRunning starts a job on queue busy held by a handler answering
// for it as a worker does, and returns its ID once it runs.
func startRunning(b *testing.B, js jetstream.JetStream, d *bus.Dispatcher) string {
	b.Helper()
	ctx := context.Background()
	id, err := d.Dispatch(ctx, lookupArgs{}, bus.OnQueue("busy"), bus.JobID("running-1"))
	if err != nil {
		b.Fatal(err)
	}
	c, err := js.Consumer(ctx, bus.JobsStream, bus.ConsumerName("busy"))
	if err != nil {
		b.Fatal(err)
	}
	m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Ack() })
	now := time.Now()
	rec := (&bus.JobStatus{ID: id, Queue: "busy", Kind: "lookup", State: bus.JobRunning, At: now, StartedAt: now, Attempt: 1, Worker: "bench:1"}).AppendJSON(nil)
	sub, err := js.Conn().Subscribe(bus.LocatePrefix+"."+bus.IDToken(id), func(msg *nats.Msg) { _ = msg.Respond(rec) })
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sub.Unsubscribe() })
	return id
}
