package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// TestAUniqueKeyIsTakenOverFromAJobThatEnded: a job's key left held after
// the job left JOBS (its worker was killed between the ack and the
// unlock) is taken over by the next dispatch of the key once the key is
// older than the grace, instead of refusing the key for its 24 h lease.
// A key whose job is still in JOBS, and a young one, are never taken.
func TestAUniqueKeyIsTakenOverFromAJobThatEnded(t *testing.T) {
	t.Parallel()
	js, d := setup(t, bus.Config{}, "idle")
	ctx := context.Background()
	first, err := d.Dispatch(ctx, welcomeEmail{UserID: 1}, bus.OnQueue("idle"), bus.Unique("k"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, bus.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	// The job is acknowledged (gone from JOBS); its worker dies before the unlock.
	if err := st.Purge(ctx, jetstream.WithPurgeSubject(wire.JobFilterForID(first))); err != nil {
		t.Fatal(err)
	}
	var dup *bus.DuplicateError
	if _, err := d.Dispatch(ctx, welcomeEmail{UserID: 2}, bus.OnQueue("idle"), bus.Unique("k")); !errors.As(err, &dup) || dup.JobID != first {
		t.Fatalf("a dispatch within the grace: %v; want the key still held by %s", err, first)
	}

	bus.SetUniqueGrace(d, time.Nanosecond)
	second, err := d.Dispatch(ctx, welcomeEmail{UserID: 2}, bus.OnQueue("idle"), bus.Unique("k"))
	if err != nil {
		t.Fatalf("a dispatch after the grace, its holder %s gone: %v", first, err)
	}
	if _, err := d.Dispatch(ctx, welcomeEmail{UserID: 3}, bus.OnQueue("idle"), bus.Unique("k")); !errors.As(err, &dup) || dup.JobID != second {
		t.Fatalf("a dispatch while %s waits in JOBS: %v; want the key held by it", second, err)
	}
}
