package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// TestUpKeepsTheConfiguredTopology: up provisions the retention, dedupe
// window and AckWait from the environment rather than resetting them to
// the defaults at every start.
func TestUpKeepsTheConfiguredTopology(t *testing.T) {
	srv := natstest.Start(t)
	env := testEnv("NATS_URL="+srv.ClientURL(), "JETFLEET_FAILED_RETENTION=1h", "JETFLEET_DUPLICATE_WINDOW=90s", "JETFLEET_ACK_WAIT=45s",
		"JETFLEET_FAILED_MAX_BYTES=1048576")
	up := startProc(t, t.TempDir(), env, "up", "--queues", "high")
	up.WaitFor(t, "jetfleet is up", 60*time.Second)
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
	cons, err := js.Consumer(ctx, bus.JobsStream, bus.ConsumerName("high"))
	if err != nil {
		t.Fatal(err)
	}
	if got := dlq.CachedInfo().Config.MaxAge; got != time.Hour {
		t.Errorf("DLQ MaxAge = %s, want 1h from JETFLEET_FAILED_RETENTION", got)
	}
	if got := dlq.CachedInfo().Config; got.MaxBytes != 1<<20 || got.Discard != jetstream.DiscardNew {
		t.Errorf("DLQ MaxBytes = %d, discard %v; want 1048576 from JETFLEET_FAILED_MAX_BYTES, discard new", got.MaxBytes, got.Discard)
	}
	if got := jobs.CachedInfo().Config.Duplicates; got != 90*time.Second {
		t.Errorf("JOBS duplicate window = %s, want 90s", got)
	}
	if got := cons.CachedInfo().Config.AckWait; got != 45*time.Second {
		t.Errorf("q-high AckWait = %s, want 45s (up's own workers must not reset it)", got)
	}
	up.Signal(t, syscall.SIGTERM)
	bad := runJF(t, t.TempDir(), testEnv("NATS_URL="+srv.ClientURL(), "JETFLEET_ACK_WAIT=soon"), "", "work")
	if bad.Code == 0 {
		t.Fatalf("work with JETFLEET_ACK_WAIT=soon exited 0")
	}
}

// TestUpRefusesABadWebSettingBeforeSayingItIsUp: a setting the web node
// refuses (a session driver, a monitoring URL that is none) stops up with
// the reason before it prints that it is up.
func TestUpRefusesABadWebSettingBeforeSayingItIsUp(t *testing.T) {
	srv := natstest.Start(t)
	for setting, value := range map[string]string{"SESSION_DRIVER": "redis", "NATS_MONITOR_URL": "notaurl"} {
		r := runJF(t, t.TempDir(), testEnv("NATS_URL="+srv.ClientURL(), setting+"="+value), "", "up", "--listen", "127.0.0.1:0", "--no-workers")
		if r.Code != 1 || strings.Contains(r.Stdout, "jetfleet is up") || !strings.Contains(r.Stderr, setting) {
			t.Errorf("up with %s=%s: exit %d\nstdout: %s\nstderr: %s\nwant exit 1 naming the setting, without saying it is up", setting, value, r.Code, r.Stdout, r.Stderr)
		}
	}
}
