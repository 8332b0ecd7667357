package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/workers"
)

// TestDispatchUnique: `dispatch --unique KEY` stores the first job; a
// second with the same key stores nothing, exits 4 and names the holder;
// `,for=D` holds the key for D; bad values are bad usage (exit 2) and
// store nothing.
func TestDispatchUnique(t *testing.T) {
	srv := natstest.Start(t)
	env := testEnv("NATS_URL=" + srv.ClientURL())
	dir := t.TempDir()
	r := runJF(t, dir, env, "", "dispatch", "default", "sync-account", `{"id":7}`, "--unique", "sync-account:7", "--id", "first")
	if r.Code != 0 || r.Stdout != "first\n" {
		t.Fatalf("first dispatch: exit %d, stdout %q, stderr %s", r.Code, r.Stdout, r.Stderr)
	}
	r = runJF(t, dir, env, "", "dispatch", "default", "sync-account", `{"id":7}`, "--unique", "sync-account:7")
	if r.Code != exitDuplicate || r.Stdout != "" || !strings.Contains(r.Stderr, `unique key "sync-account:7" is held by job first`) {
		t.Fatalf("second dispatch: exit %d, stdout %q, stderr %q; want 4 naming the holder", r.Code, r.Stdout, r.Stderr)
	}
	r = runJF(t, dir, env, "", "dispatch", "default", "digest", `{}`, "--unique", "digest,for=1h")
	if r.Code != 0 {
		t.Fatalf("--unique digest,for=1h: exit %d, stderr %s", r.Code, r.Stderr)
	}
	for _, c := range []struct{ value, want string }{
		{"", "--unique key is empty"},
		{"k,for=zz", `for=zz: want a duration of at least 1s`},
		{"k,for=500ms", "want a duration of at least 1s"},
		{strings.Repeat("k", 129), "--unique key is 129 bytes; the limit is 128"},
	} {
		r := runJF(t, dir, env, "", "dispatch", "default", "digest", `{}`, "--unique", c.value)
		if r.Code != 2 || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("--unique %q: exit %d, stderr %q; want 2 and %q", c.value, r.Code, r.Stderr, c.want)
		}
	}
	_, js := natstest.Connect(t, srv.ClientURL())
	if n := jobsCount(t, js); n != 2 {
		t.Fatalf("JOBS holds %d, want the 2 accepted jobs", n)
	}
}

// throttled is a job kind under MaxConcurrent(1) in the test's worker.
type throttled struct{}

func (throttled) Kind() string { return "throttled" }

// TestQueueStatsShowsJobsWaitingForALimit: `queue stats` lists, per queue
// and kind, the jobs workers hold for a fleet-wide limit (and --json has
// them), read from the workers' presence records.
func TestQueueStatsShowsJobsWaitingForALimit(t *testing.T) {
	f := newFleet(t)
	release := make(chan struct{})
	w := workers.New(f.js, workers.Config{PresenceInterval: 100 * time.Millisecond, Grace: time.Second})
	workers.Register(w, func(ctx context.Context, _ *workers.Job[throttled]) error {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}, workers.MaxConcurrent(1))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { close(release); cancel(); <-done }()
	for range 4 {
		f.dispatch("default", throttled{})
	}
	eventually(t, 10*time.Second, "3 jobs waiting in the stats", func() error {
		if q := queueStats(f.stats(), "default"); q.Waiting != 3 || q.WaitingKinds["throttled"] != 3 {
			return fmt.Errorf("default = %+v", q)
		}
		return nil
	})
	r := f.jf("queue", "stats")
	if r.Code != 0 || !strings.Contains(r.Stdout, "Waiting for a concurrency slot or rate token") {
		t.Fatalf("queue stats: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	var row []string
	for _, line := range strings.Split(r.Stdout, "\n") {
		if fields := strings.Fields(line); len(fields) == 3 && fields[1] == "throttled" {
			row = fields
		}
	}
	if strings.Join(row, " ") != "default throttled 3" {
		t.Fatalf("waiting row %q in:\n%s", row, r.Stdout)
	}
	assertFits80(t, "queue stats", r.Stdout)
	t.Logf("jetfleet queue stats:\n%s", r.Stdout)
}
