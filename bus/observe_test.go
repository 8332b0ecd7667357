package bus_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
)

// TestOnDispatchedSeesEveryStoredJob: Dispatch, DispatchJSON, a delayed
// job and each stored job of a DispatchMany are reported with their queue
// and kind; an invalid job, which is not stored, is not.
func TestOnDispatchedSeesEveryStoredJob(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	cfg := bus.Config{OnDispatched: func(queue, kind string) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, queue+"/"+kind)
	}}
	_, d := setup(t, cfg, "default", "images")
	ctx := context.Background()
	if _, err := d.Dispatch(ctx, resizeImage{ItemID: 1}, bus.OnQueue("images")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DispatchJSON(ctx, "send-email", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DispatchJSON(ctx, "later", []byte(`{}`), bus.Delay(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DispatchJSON(ctx, "bad", []byte(`not json`)); err == nil {
		t.Fatal("invalid JSON was dispatched")
	}
	_, err := d.DispatchMany(ctx,
		bus.DispatchManyParams{Args: resizeImage{ItemID: 2}, Opts: []bus.Option{bus.OnQueue("images")}},
		bus.DispatchManyParams{Args: resizeImage{ItemID: 3}, Opts: []bus.Option{bus.OnQueue("Bad Queue")}},
	)
	if err == nil {
		t.Fatal("a batch with an invalid queue reported no error")
	}
	want := []string{"images/resize-image", "default/send-email", "default/later", "images/resize-image"}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, want) {
		t.Fatalf("OnDispatched saw %v, want %v", got, want)
	}
}

// TestFailedSinceCountsRecentDeadLetters: dead letters stored before a
// moment are left out; retried ones have left DLQ and are not counted.
func TestFailedSinceCountsRecentDeadLetters(t *testing.T) {
	t.Parallel()
	js, d := setup(t, bus.Config{}, "default", "images")
	in := newInspector(t, js)
	ctx := context.Background()
	if n, err := in.FailedSince(ctx, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("FailedSince on an empty DLQ = %d, %v", n, err)
	}
	failJob(t, js, d, "default", resizeImage{ItemID: 1}, "old")
	time.Sleep(20 * time.Millisecond) // stream timestamps must differ
	mark := time.Now()
	time.Sleep(20 * time.Millisecond)
	var recent []string
	for i := range 3 {
		recent = append(recent, failJob(t, js, d, "images", resizeImage{ItemID: int64(10 + i)}, "recent"))
	}
	if n, err := in.FailedSince(ctx, mark); err != nil || n != 3 {
		t.Fatalf("FailedSince(mark) = %d, %v; want 3", n, err)
	}
	if n, err := in.FailedSince(ctx, mark.Add(-time.Hour)); err != nil || n != 4 {
		t.Fatalf("FailedSince(an hour before) = %d, %v; want 4", n, err)
	}
	if _, err := in.Retry(ctx, recent[1]); err != nil {
		t.Fatal(err)
	}
	if n, err := in.FailedSince(ctx, mark); err != nil || n != 2 {
		t.Fatalf("FailedSince(mark) after a retry = %d, %v; want 2", n, err)
	}
	if n, err := in.FailedSince(ctx, time.Now().Add(time.Minute)); err != nil || n != 0 {
		t.Fatalf("FailedSince(the future) = %d, %v; want 0", n, err)
	}
}
