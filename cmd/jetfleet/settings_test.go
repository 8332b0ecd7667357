package main

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/wire"
)

// TestUpKeepsTheConfiguredTopology: up provisions the retention, dedupe
// window and AckWait from the environment rather than resetting them to
// the defaults at every start.
func TestUpKeepsTheConfiguredTopology(t *testing.T) {
	srv := natstest.Start(t)
	env := testEnv("NATS_URL="+srv.ClientURL(), "JETFLEET_FAILED_RETENTION=1h", "JETFLEET_DUPLICATE_WINDOW=90s", "JETFLEET_ACK_WAIT=45s")
	up := startProc(t, t.TempDir(), env, "up", "--queues", "high")
	up.waitFor(t, "jetfleet is up", 60*time.Second)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := context.Background()
	dlq, err := js.Stream(ctx, bus.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := js.Stream(ctx, bus.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, bus.JobsStream, wire.ConsumerName("high"))
	if err != nil {
		t.Fatal(err)
	}
	if got := dlq.CachedInfo().Config.MaxAge; got != time.Hour {
		t.Errorf("DLQ MaxAge = %s, want 1h from JETFLEET_FAILED_RETENTION", got)
	}
	if got := jobs.CachedInfo().Config.Duplicates; got != 90*time.Second {
		t.Errorf("JOBS duplicate window = %s, want 90s", got)
	}
	if got := cons.CachedInfo().Config.AckWait; got != 45*time.Second {
		t.Errorf("q-high AckWait = %s, want 45s (up's own workers must not reset it)", got)
	}
	up.signal(t, syscall.SIGTERM)
	bad := runJF(t, t.TempDir(), testEnv("NATS_URL="+srv.ClientURL(), "JETFLEET_ACK_WAIT=soon"), "", "work")
	if bad.code == 0 {
		t.Fatalf("work with JETFLEET_ACK_WAIT=soon exited 0")
	}
}
