package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

func TestDelayedJobIsNotReadyEarly(t *testing.T) {
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "default")
	start := time.Now()
	id, err := d.Dispatch(ctx, welcomeEmail{UserID: 3}, bus.Delay(2*time.Second), bus.Tries(4))
	if err != nil {
		t.Fatalf("dispatch: %v", err)
	}
	// Poll until the job can be fetched; it must not come before 2 s.
	var m jetstream.Msg
	for m == nil && time.Since(start) < 10*time.Second {
		m = fetchOne(t, js, "default", 250*time.Millisecond)
	}
	if m == nil {
		t.Fatal("delayed job never became ready")
	}
	if waited := time.Since(start); waited < 2*time.Second {
		t.Fatalf("delayed job delivered after %s, before its 2s delay", waited)
	}
	job, err := bus.ParseJob(m)
	if err != nil {
		t.Fatal(err)
	}
	if job.ID != id || job.Tries != 4 || job.Kind != "send-welcome-email" {
		t.Fatalf("delayed job = %+v, want ID %s and tries 4", job, id)
	}
}

func TestDelayedDispatchDedupes(t *testing.T) {
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "default")
	for range 2 {
		if _, err := d.Dispatch(ctx, welcomeEmail{UserID: 3}, bus.Delay(time.Hour), bus.JobID("later")); err != nil {
			t.Fatal(err)
		}
	}
	if n := natstest.StreamMsgs(t, js, bus.JobsStream); n != 1 {
		t.Fatalf("JOBS holds %d schedules, want 1", n)
	}
}

func TestPeriodicJobFiresAndReRegisteringReplacesIt(t *testing.T) {
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "default")
	if err := d.Schedule(ctx, "tick", "@every 1s", welcomeEmail{UserID: 1}); err != nil {
		t.Fatalf("schedule: %v", err)
	}
	if n := countFor(t, js, "default", 3500*time.Millisecond); n < 2 {
		t.Fatalf("periodic job fired %d times in 3.5s, want at least 2", n)
	}
	// Register the same name twice more: still one schedule.
	for i := range 2 {
		if err := d.Schedule(ctx, "tick", "@every 1s", welcomeEmail{UserID: int64(10 + i)}); err != nil {
			t.Fatalf("re-register: %v", err)
		}
	}
	scheds, err := d.Schedules(ctx)
	if err != nil || len(scheds) != 1 {
		t.Fatalf("schedules = %+v, %v; want exactly one", scheds, err)
	}
	if s := scheds[0]; s.Name != "tick" || s.Spec != "@every 1s" || s.Queue != "default" || s.Kind != "send-welcome-email" || string(s.Body) != `{"user_id":11}` {
		t.Fatalf("schedule = %+v", s)
	}
	drain(t, js, "default")
	// A doubled or tripled schedule would fire 2-3 times a second.
	if n := countFor(t, js, "default", 4*time.Second); n < 2 || n > 5 {
		t.Fatalf("after re-registering, %d runs in 4s, want one schedule's 3-5", n)
	}
	if err := d.Unschedule(ctx, "tick"); err != nil {
		t.Fatal(err)
	}
	drain(t, js, "default")
	if n := countFor(t, js, "default", 2500*time.Millisecond); n != 0 {
		t.Fatalf("unscheduled job still fired %d times", n)
	}
}

func TestScheduleValidation(t *testing.T) {
	ctx := context.Background()
	_, d := setup(t, bus.Config{})
	for spec, want := range map[string]string{
		"":             "schedule spec is empty",
		"@every 10ms":  "at least 1s",
		"@fortnightly": "unknown shortcut",
		"* * *":        "has 3 fields",
	} {
		err := d.Schedule(ctx, "x", spec, welcomeEmail{})
		if !errors.Is(err, bus.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("spec %q: err = %v, want %q", spec, err, want)
		}
	}
	if err := d.Schedule(ctx, "x", "@every 1m", welcomeEmail{}, bus.Delay(time.Second)); err == nil {
		t.Error("a delayed periodic job was accepted")
	}
	if err := d.Schedule(ctx, "Bad Name", "@every 1m", welcomeEmail{}); !errors.Is(err, bus.ErrInvalid) {
		t.Errorf("bad schedule name: err = %v", err)
	}
	if err := d.Schedule(ctx, "nightly", "30 2 * * *", welcomeEmail{}); err != nil {
		t.Errorf("5-field cron refused: %v", err)
	}
}

// countFor fetches and acks jobs of queue for d and returns how many came.
func countFor(t *testing.T, js jetstream.JetStream, queue string, d time.Duration) int {
	t.Helper()
	n := 0
	for end := time.Now().Add(d); time.Now().Before(end); {
		if m := fetchOne(t, js, queue, 200*time.Millisecond); m != nil {
			n++
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return n
}

func drain(t *testing.T, js jetstream.JetStream, queue string) {
	t.Helper()
	for m := fetchOne(t, js, queue, 100*time.Millisecond); m != nil; m = fetchOne(t, js, queue, 100*time.Millisecond) {
		_ = m.Ack()
	}
}
