// Package jetfleettest helps a service's own tests, as River's rivertest
// does for River: StartNATS runs a real NATS server with JetStream for one
// test, and RequireDispatched, RequireNotDispatched and Waiting check the
// jobs a route or a handler under test dispatched, without running them.
//
// Every function takes a TB, which *testing.T and *testing.B satisfy. The
// server listens on a random loopback port and keeps its store in the
// test's temporary directory, so tests run in parallel and leave nothing
// behind. To run the jobs instead, run a worker in the test with
// workers.Config{StopWhenEmpty: true}: its Run returns once the queues are
// empty.
package jetfleettest

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natsembed"
)

// TB is the part of testing.TB the helpers use.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// StartNATS starts a NATS server with JetStream for the test, on a random
// loopback port with its store in tb.TempDir(), stops it at cleanup, and
// returns its client URL.
func StartNATS(tb TB) string {
	tb.Helper()
	srv, err := natsembed.Start(natsembed.Config{Listen: "127.0.0.1:-1", StoreDir: tb.TempDir()})
	if err != nil {
		tb.Fatalf("jetfleettest: start NATS: %v", err)
	}
	tb.Cleanup(srv.Shutdown)
	return srv.ClientURL()
}

// Connect connects to url, closing the connection at cleanup, and returns
// its JetStream context.
func Connect(tb TB, url string) jetstream.JetStream {
	tb.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		tb.Fatalf("jetfleettest: connect to %s: %v", url, err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("jetfleettest: %v", err)
	}
	return js
}

// Job is a job waiting in JOBS, its arguments decoded into T.
type Job[T bus.Args] struct {
	// ID is the job's ID: Jetfleet-Job-Id, Nats-Msg-Id, or its sequence.
	ID string
	// Queue is the queue it was dispatched to.
	Queue string
	// Args are its arguments.
	Args T
	// Header holds its headers (its settings, tags, trace...).
	Header nats.Header
	// Delayed is true for a job that waits for its time (bus.Delay,
	// bus.At) rather than for a worker.
	Delayed bool
	// Seq is its sequence in JOBS.
	Seq uint64
}

// Waiting returns every job of T's kind waiting in JOBS, ready or
// delayed, oldest first: those no worker has settled yet (a job a worker
// has run stays a moment after its ack; see RequireNotDispatched). It fails the test
// when JOBS cannot be read or a job's body does not decode into T.
func Waiting[T bus.Args](tb TB, js jetstream.JetStream) []Job[T] {
	tb.Helper()
	var zero T
	kind := zero.Kind()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, bus.JobsStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil // nothing was ever dispatched
	}
	if err != nil {
		tb.Fatalf("jetfleettest: stream %s: %v", bus.JobsStream, err)
	}
	state := s.CachedInfo().State
	var out []Job[T]
	for seq := state.FirstSeq; seq > 0 && seq <= state.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // taken and acknowledged, or removed
		}
		if err != nil {
			tb.Fatalf("jetfleettest: read %s message %d: %v", bus.JobsStream, seq, err)
		}
		job, ok := jobOf[T](m, kind)
		if !ok {
			continue
		}
		if err := json.Unmarshal(m.Data, &job.Args); err != nil {
			tb.Fatalf("jetfleettest: job %s of kind %s: body %q does not decode into %T: %v", job.ID, kind, m.Data, job.Args, err)
		}
		out = append(out, job)
	}
	return out
}

// RequireDispatched fails the test unless a job of T's kind waits in
// JOBS, and returns the newest such job for further checks of its
// arguments and options.
func RequireDispatched[T bus.Args](tb TB, js jetstream.JetStream) Job[T] {
	tb.Helper()
	jobs := Waiting[T](tb, js)
	if len(jobs) == 0 {
		var zero T
		tb.Fatalf("jetfleettest: no job of kind %s was dispatched (none waits in %s)", zero.Kind(), bus.JobsStream)
		return Job[T]{}
	}
	return jobs[len(jobs)-1]
}

// RequireNotDispatched fails the test when a job of T's kind waits in
// JOBS. A job a worker has just run leaves JOBS a moment after its ack
// reaches the server (the server removes it on its own time, even once
// Run has returned), so jobs found are looked for again for up to
// settleWait before the test fails.
func RequireNotDispatched[T bus.Args](tb TB, js jetstream.JetStream) {
	tb.Helper()
	deadline := time.Now().Add(settleWait)
	for {
		jobs := Waiting[T](tb, js)
		if len(jobs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("jetfleettest: %d job(s) of kind %s dispatched, want none; the newest: %s on queue %s", len(jobs), jobs[0].Args.Kind(), jobs[len(jobs)-1].ID, jobs[len(jobs)-1].Queue)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settleWait is how long RequireNotDispatched gives acked jobs to leave
// JOBS.
const settleWait = 2 * time.Second

// jobOf reads m as a job of kind: a ready one on jobs.<queue>.<kind>[.<id>]
// or a delayed one whose schedule targets such a subject.
func jobOf[T bus.Args](m *jetstream.RawStreamMsg, kind string) (Job[T], bool) {
	subject, delayed := m.Subject, false
	if strings.HasPrefix(subject, bus.SchedulePrefix+".delay.") {
		subject, delayed = m.Header.Get("Nats-Schedule-Target"), true
	}
	parts := strings.Split(subject, ".")
	if len(parts) < 3 || len(parts) > 4 || parts[0] != "jobs" || parts[2] != kind {
		return Job[T]{}, false
	}
	id := m.Header.Get(bus.HeaderJobID)
	if id == "" {
		id = m.Header.Get(bus.HeaderMsgID)
	}
	if id == "" {
		id = strconv.FormatUint(m.Sequence, 10)
	}
	return Job[T]{ID: id, Queue: parts[1], Header: m.Header, Delayed: delayed, Seq: m.Sequence}, true
}
