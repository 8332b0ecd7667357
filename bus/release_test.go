package bus_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// TestReleaseCarriesTheTriesUsed: a released job is stored again with its
// ID, body and headers, Jetfleet-Released one more and Jetfleet-Tries-Used
// the tries it used before this attempt; releasing the same message twice
// (a crash between the store and the ack) stores it once; its next
// delivery counts its attempt from the tries used.
func TestReleaseCarriesTheTriesUsed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "default")
	id, err := d.Dispatch(ctx, welcomeEmail{UserID: 7}, bus.Tries(5), bus.Unique("welcome:7"))
	if err != nil {
		t.Fatal(err)
	}
	m := fetchOne(t, js, "default", 2*time.Second)
	if err := m.Nak(); err != nil { // a failed attempt: the next delivery is attempt 2
		t.Fatal(err)
	}
	m = fetchOne(t, js, "default", 2*time.Second)
	job, err := bus.ParseJob(m)
	if err != nil || job.Attempt != 2 || job.Released != 0 {
		t.Fatalf("job = %+v, %v; want attempt 2, never released", job, err)
	}
	for range 2 {
		if err := bus.Release(ctx, js, job, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Ack(); err != nil {
		t.Fatal(err)
	}
	m = fetchOne(t, js, "default", 2*time.Second)
	again, err := bus.ParseJob(m)
	if err != nil {
		t.Fatal(err)
	}
	h := again.Header
	if again.ID != id || again.Attempt != 2 || again.Released != 1 || h.Get(bus.HeaderTriesUsed) != "1" || h.Get(bus.HeaderReleased) != "1" ||
		h.Get(bus.HeaderMsgID) != id+":release:"+strconv.FormatUint(job.Seq, 10) || h.Get(bus.HeaderTries) != "5" || h.Get(bus.HeaderUnique) != "welcome:7" ||
		string(again.Body) != string(job.Body) {
		t.Fatalf("released job = %+v; headers %v", again, h)
	}
	if err := m.Ack(); err != nil {
		t.Fatal(err)
	}
	if extra := fetchOne(t, js, "default", 300*time.Millisecond); extra != nil {
		t.Fatalf("releasing the same message twice stored it twice: %s", extra.Headers())
	}
	if n := natstest.StreamMsgs(t, js, bus.JobsStream); n != 0 {
		t.Fatalf("JOBS holds %d", n)
	}
}

func TestPendingFailureRoundTripsAndRefusesWhatItCannotRead(t *testing.T) {
	h := nats.Header{}
	bus.SetPendingFailure(h, "boom\nsecond line "+strings.Repeat("x", 2000), 3)
	reason, attempts, ok := bus.PendingFailure(h)
	if !ok || attempts != 3 || !strings.HasPrefix(reason, "boom\nsecond line xxx") || len(h.Get(bus.HeaderPendingFailure)) > 520 {
		t.Fatalf("round trip: %q, %d, %v (header %d bytes)", reason[:min(len(reason), 40)], attempts, ok, len(h.Get(bus.HeaderPendingFailure)))
	}
	for _, v := range []string{"", "3", "x boom", "-1 boom", "99999999999 boom"} {
		if _, _, ok := bus.PendingFailure(nats.Header{bus.HeaderPendingFailure: {v}}); ok {
			t.Errorf("%s %q read as valid", bus.HeaderPendingFailure, v)
		}
	}
}
