package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/proctest"
)

// TestAUniqueKeyOutlivesNoWorkerKilledAfterItsAck: a worker process built
// with -tags jetfleet_debughooks kills itself with SIGKILL right after a
// unique job's ack was confirmed, before it frees the key. The key stays
// held (the job is done, its worker gone), so a dispatch of the key at
// once is refused; 10 s after the key was taken, a dispatch of the key
// takes it over (the holder is neither in JOBS nor running) instead of
// waiting out the key's 24 h lease.
func TestAUniqueKeyOutlivesNoWorkerKilledAfterItsAck(t *testing.T) {
	t.Parallel()
	bin, cleanup, err := proctest.BuildWith(".", "jetfleet-debughooks", "-tags", "jetfleet_debughooks")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	srv, err := natsembed.Start(natsembed.Config{Listen: fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(t, 1)[0]), StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown() })
	dir := t.TempDir()
	env := testEnv("NATS_URL=" + srv.ClientURL())
	dispatch := func(id string) result {
		return runJF(t, dir, env, "", "dispatch", "default", "jetfleet-noop", "{}", "--unique", "nightly-report", "--id", id)
	}
	if r := dispatch("first"); r.Code != 0 {
		t.Fatalf("first dispatch: exit %d: %s", r.Code, r.Stderr)
	}
	taken := time.Now()
	w := proctest.Start(t, bin, t.TempDir(), testEnv("NATS_URL="+srv.ClientURL(), "JETFLEET_DEBUG_KILL_AFTER_ACK=1"), "work")
	select {
	case <-w.Done:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not kill itself after the ack within 30 s")
	}
	if !strings.Contains(w.Stderr.String(), "killing the worker after the ack") {
		t.Fatalf("the worker ended without reaching the hook:\n%s", w.Stderr.String())
	}
	if r := dispatch("too-soon"); r.Code != 4 || !strings.Contains(r.Stderr, "held by job first") {
		t.Fatalf("a dispatch of the key right after the kill: exit %d, %s; want 4, held by job first", r.Code, r.Stderr)
	}
	time.Sleep(time.Until(taken.Add(11 * time.Second)))
	if r := dispatch("second"); r.Code != 0 {
		t.Fatalf("a dispatch of the key once it is 10 s old, its job done: exit %d: %s", r.Code, r.Stderr)
	}
	if r := dispatch("third"); r.Code != 4 || !strings.Contains(r.Stderr, "held by job second") {
		t.Fatalf("a dispatch while the second waits: exit %d, %s; want 4, held by job second", r.Code, r.Stderr)
	}
}
