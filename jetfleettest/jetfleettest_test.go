package jetfleettest_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/jetfleettest"
	"github.com/jetfleet/jetfleet/workers"
)

type welcome struct {
	User string `json:"user"`
}

func (welcome) Kind() string { return "welcome" }

type invoice struct {
	Order int `json:"order"`
}

func (invoice) Kind() string { return "invoice" }

// failing is a TB whose Fatalf records the message and ends the helper
// with a panic the test recovers, to check what the helpers refuse.
type failing struct {
	testing.TB
	msg string
}

type fatal struct{}

func (f *failing) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(fatal{})
}

func fails(t *testing.T, check func(tb jetfleettest.TB)) string {
	t.Helper()
	f := &failing{TB: t}
	func() {
		defer func() {
			if p := recover(); p != nil && p != (fatal{}) {
				panic(p)
			}
		}()
		check(f)
	}()
	return f.msg
}

func TestRequireDispatched(t *testing.T) {
	t.Parallel()
	js := jetfleettest.Connect(t, jetfleettest.StartNATS(t))
	jetfleettest.RequireNotDispatched[welcome](t, js) // no JOBS stream yet: nothing dispatched

	ctx := context.Background()
	d := provision(t, js)
	if _, err := d.Dispatch(ctx, welcome{User: "ann"}); err != nil {
		t.Fatal(err)
	}
	bob, err := d.Dispatch(ctx, welcome{User: "bob"}, bus.OnQueue("emails"), bus.Delay(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Dispatch(ctx, invoice{Order: 7}); err != nil {
		t.Fatal(err)
	}

	if got := jetfleettest.Waiting[welcome](t, js); len(got) != 2 || got[0].Args.User != "ann" || got[0].Delayed || got[0].Queue != "default" {
		t.Fatalf("Waiting = %+v; want ann ready on default, then bob", got)
	}
	newest := jetfleettest.RequireDispatched[welcome](t, js)
	if newest.ID != bob || newest.Args.User != "bob" || !newest.Delayed || newest.Queue != "emails" {
		t.Errorf("RequireDispatched = %+v; want bob's delayed job %s on emails", newest, bob)
	}
	if msg := fails(t, func(tb jetfleettest.TB) { jetfleettest.RequireNotDispatched[invoice](tb, js) }); !strings.Contains(msg, "1 job(s) of kind invoice dispatched, want none") {
		t.Errorf("RequireNotDispatched with an invoice waiting: %q", msg)
	}

	// A worker that stops when the queues are empty runs the ready jobs.
	w := workers.New(js, workers.Config{Queues: []string{"default"}, StopWhenEmpty: true})
	workers.Register(w, func(context.Context, *workers.Job[welcome]) error { return nil })
	workers.Register(w, func(context.Context, *workers.Job[invoice]) error { return nil })
	if err := w.Run(ctx); err != nil {
		t.Fatal(err)
	}
	// The acked jobs leave JOBS a moment after Run returns.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got := jetfleettest.Waiting[welcome](t, js)
		if len(got) == 1 && got[0].ID == bob {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the worker: %+v; want only bob's delayed job", got)
		}
	}
	jetfleettest.RequireNotDispatched[invoice](t, js)
	if msg := fails(t, func(tb jetfleettest.TB) { jetfleettest.RequireDispatched[invoice](tb, js) }); !strings.Contains(msg, "no job of kind invoice was dispatched") {
		t.Errorf("RequireDispatched with none waiting: %q", msg)
	}
}

// A job a worker has just run leaves JOBS a moment after its ack, even
// once Run has returned: RequireNotDispatched gives it that moment
// instead of failing the test (here the job is removed 300 ms later).
func TestRequireNotDispatchedWaitsForAJobOnItsWayOut(t *testing.T) {
	t.Parallel()
	js := jetfleettest.Connect(t, jetfleettest.StartNATS(t))
	ctx := context.Background()
	d := provision(t, js)
	if _, err := d.Dispatch(ctx, invoice{Order: 1}); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, bus.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	removed := make(chan error, 1)
	time.AfterFunc(300*time.Millisecond, func() { removed <- s.Purge(ctx) })
	jetfleettest.RequireNotDispatched[invoice](t, js)
	if err := <-removed; err != nil {
		t.Fatal(err)
	}
}

// provision makes the streams and returns a Dispatcher on js.
func provision(t *testing.T, js jetstream.JetStream) *bus.Dispatcher {
	t.Helper()
	if err := bus.Provision(context.Background(), js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}
