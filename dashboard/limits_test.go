package dashboard_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/dashboard"
	"github.com/jetfleet/jetfleet/workers"
)

// slowAPI is a job kind under MaxConcurrent(1).
type slowAPI struct{}

func (slowAPI) Kind() string { return "slow-api" }

// TestOverviewShowsJobsWaitingForALimit: jobs a worker holds for a
// fleet-wide limit show in the queue's Waiting cell and, per kind, in the
// table of waiting jobs.
func TestOverviewShowsJobsWaitingForALimit(t *testing.T) {
	e := newEnv(t, dashboard.Config{Open: true})
	release := make(chan struct{})
	w := workers.New(e.js, workers.Config{PresenceInterval: 100 * time.Millisecond, Grace: time.Second})
	workers.Register(w, func(ctx context.Context, _ *workers.Job[slowAPI]) error {
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
	for range 3 {
		if _, err := e.d.Dispatch(ctx, slowAPI{}); err != nil {
			t.Fatal(err)
		}
	}
	c := browser(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, page, _ := do(t, c, "GET", e.url+"/jetfleet/fragments/overview", nil)
		if cell(t, page, "default", "waiting") == "2" {
			if !strings.Contains(page, `<tr data-waiting="default/slow-api"><th scope="row">default</th><td>slow-api</td><td class="num">2</td></tr>`) {
				t.Fatalf("no row for default/slow-api in the waiting table:\n%s", page)
			}
			if cell(t, page, "high", "waiting") != "0" {
				t.Errorf("high shows waiting jobs")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting on default = %q, want 2", cell(t, page, "default", "waiting"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
