package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
)

// TestClearFreesTheUniqueKeysOfItsJobs: Clear deletes a queue's ready jobs
// and a job delivered but not acknowledged; the until-done unique keys
// they held are free at once (before, they stayed held for their 24 h
// lease: the same job could not be dispatched again after a clear). The
// key of a delayed job (which Clear keeps), of another queue's job, held
// for a time (UniqueFor), and one taken within the grace (its job may not
// be stored yet) stay held.
func TestClearFreesTheUniqueKeysOfItsJobs(t *testing.T) {
	t.Parallel()
	js, d := setup(t, bus.Config{}, "idle", "other")
	ctx := context.Background()
	dispatch := func(key string, opts ...bus.Option) string {
		t.Helper()
		id, err := d.Dispatch(ctx, welcomeEmail{UserID: 1}, append(opts, bus.Unique(key))...)
		if err != nil {
			t.Fatalf("dispatch %s: %v", key, err)
		}
		return id
	}
	dispatch("ready", bus.OnQueue("idle"))
	dispatch("delivered", bus.OnQueue("idle"))
	if m := fetchOne(t, js, "idle", 2*time.Second); m == nil { // "ready" stays ready
		t.Fatal("no job delivered")
	}
	dispatch("delayed", bus.OnQueue("idle"), bus.Delay(time.Hour))
	if _, err := d.Dispatch(ctx, welcomeEmail{UserID: 1}, bus.OnQueue("idle"), bus.Unique("for an hour", bus.UniqueFor(time.Hour))); err != nil {
		t.Fatal(err)
	}
	dispatch("other queue", bus.OnQueue("other"))

	in := newInspector(t, js)
	bus.SetClearGrace(in, time.Nanosecond)
	if n, err := in.Clear(ctx, "idle"); err != nil || n != 3 {
		t.Fatalf("Clear = %d, %v; want 3 (ready, delivered, for an hour)", n, err)
	}
	for _, key := range []string{"ready", "delivered"} {
		if _, err := d.Dispatch(ctx, welcomeEmail{UserID: 2}, bus.OnQueue("idle"), bus.Unique(key)); err != nil {
			t.Errorf("the key %q of a cleared job: %v", key, err)
		}
	}
	for _, key := range []string{"delayed", "for an hour", "other queue"} {
		if _, err := d.Dispatch(ctx, welcomeEmail{UserID: 2}, bus.OnQueue("idle"), bus.Unique(key)); !errors.Is(err, bus.ErrDuplicate) {
			t.Errorf("the key %q after the clear: %v; want it still held", key, err)
		}
	}

	young := newInspector(t, js) // the default grace: keys taken just now stay
	dispatch("young", bus.OnQueue("idle"))
	if _, err := young.Clear(ctx, "idle"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Dispatch(ctx, welcomeEmail{UserID: 2}, bus.OnQueue("idle"), bus.Unique("young")); !errors.Is(err, bus.ErrDuplicate) {
		t.Errorf("the key of a job dispatched within the grace: %v; want it still held", err)
	}
}
