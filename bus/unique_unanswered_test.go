package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/bus/internal/wire"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// TestAUniqueKeyStaysWhenAnAttemptWentUnanswered: a dispatch whose first
// attempt got no answer (a stream leader that died with the request may
// have stored the job) and whose later attempts found no stream at all
// fails, and keeps its unique key: the job may be stored, and a second
// dispatch of the key must not store it twice (it will take the key over
// only if the job is not in JOBS). Here no JOBS stream
// exists; a subscriber on jobs.> stands for the leader that takes the
// first request and never answers.
func TestAUniqueKeyStaysWhenAnAttemptWentUnanswered(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out a publish attempt and the no-leader retries (20 s)")
	}
	t.Parallel()
	ctx := context.Background()
	srv := natstest.Start(t)
	nc, js := natstest.Connect(t, srv.ClientURL())
	if err := bus.ProvisionBuckets(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	leader, err := nc.SubscribeSync("jobs.>")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		_, _ = leader.NextMsg(30 * time.Second) // takes the first attempt, answers nothing
		_ = leader.Unsubscribe()
	}()
	_, err = d.DispatchJSON(ctx, "report", []byte(`{}`), bus.Unique("report:7"))
	if err == nil || errors.Is(err, bus.ErrDuplicate) {
		t.Fatalf("dispatch with no stream = %v, want a failure", err)
	}
	kv, err := js.KeyValue(ctx, bus.UniqueBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, wire.KeyToken("report:7")); err != nil {
		t.Fatalf("the key after the failed dispatch: %v; want it held, the first job may be stored", err)
	}
}
