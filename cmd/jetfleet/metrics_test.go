package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/promtest"
	"github.com/jetfleet/jetfleet/metrics"
	"github.com/jetfleet/jetfleet/workers"
)

// TestWorkMetricsMoveByExactlyTheWork scrapes `jetfleet work
// --metrics-listen` while it runs 10 jobs of a queue only it serves, 2 of
// which fail for good: its counters move by exactly that.
func TestWorkMetricsMoveByExactlyTheWork(t *testing.T) {
	_, dir, _ := startUp(t, testEnv())
	port := natstest.FreePorts(t, 1)[0]
	work := startProc(t, dir, testEnv(), "work", "--queue", "reports", "--no-catalog", "--metrics-listen", fmt.Sprintf("127.0.0.1:%d", port))
	work.WaitFor(t, "worker started", 30*time.Second)
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	for i := range 10 {
		kind, body := "jetfleet-noop", "{}"
		if i%5 == 4 {
			kind, body = "jetfleet-fail", `{"message":"report generator down"}`
		}
		if r := runJF(t, dir, testEnv(), "", "dispatch", "reports", kind, body, "--tries", "1"); r.Code != 0 {
			t.Fatalf("dispatch: %s", r.Stderr)
		}
	}
	var f promtest.Families
	eventually(t, 60*time.Second, "2 dead letters and 8 successes on the worker's /metrics", func() (err error) {
		if f, err = promtest.Scrape(url); err != nil {
			return err
		}
		dead, ok := f.Sum("jetfleet_jobs_dead_lettered_total", "queue", "reports"), f.Sum("jetfleet_jobs_processed_total", "queue", "reports", "outcome", "succeeded")
		if dead != 2 || ok != 8 {
			return fmt.Errorf("dead-lettered %v, succeeded %v", dead, ok)
		}
		return nil
	})
	for _, c := range []struct {
		name  string
		match []string
		want  float64
	}{
		{"jetfleet_jobs_started_total", []string{"queue", "reports"}, 10},
		{"jetfleet_jobs_processed_total", []string{"queue", "reports", "kind", "jetfleet-fail", "outcome", "failed"}, 2},
		{"jetfleet_jobs_retried_total", []string{"queue", "reports"}, 0},
		{"jetfleet_job_run_duration_seconds", []string{"queue", "reports"}, 10},
		{"jetfleet_job_wait_duration_seconds", []string{"queue", "reports"}, 10},
	} {
		if got := f.Sum(c.name, c.match...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.match, got, c.want)
		}
	}
	if missing := f.Missing("go_goroutines", "process_cpu_seconds_total"); len(missing) > 0 {
		t.Errorf("runtime families missing: %v", missing)
	}
}

// TestUpMetricsFamilies scrapes /metrics of `jetfleet up` after a login
// (a session saved, a welcome email dispatched and run) and a few
// requests: every family of the web node is there and has moved, and no
// raw path became a route label.
func TestUpMetricsFamilies(t *testing.T) {
	_, _, base := startUp(t, testEnv())
	c := ct.NewClient(t, base)
	if r := c.Login("ann"); !r.Created {
		t.Fatalf("login: %+v", r)
	}
	for _, p := range []string{"/items", "/items/12345", "/no-such-page-4711", "/up"} {
		c.Do(http.MethodGet, p, nil, nil)
	}
	var f promtest.Families
	eventually(t, 30*time.Second, "the welcome email dispatched and sent, counted on up's /metrics", func() (err error) {
		if f, err = promtest.Scrape(base + "/metrics"); err != nil {
			return err
		}
		sent := f.Sum("jetfleet_jobs_processed_total", "queue", "emails", "kind", "send-welcome-email", "outcome", "succeeded")
		if d := f.Sum("jetfleet_jobs_dispatched_total", "queue", "emails", "kind", "send-welcome-email"); d != 1 || sent != 1 {
			return fmt.Errorf("dispatched %v, sent %v", d, sent)
		}
		// The worker writes its presence record just after it starts and the
		// queue gauges are cached for 5 s: a first scrape can come before it.
		if w := f.Sum("jetfleet_workers"); w < 1 {
			return fmt.Errorf("jetfleet_workers = %v", w)
		}
		return nil
	})
	if missing := f.Missing(
		"jetfleet_http_requests_total", "jetfleet_http_request_duration_seconds", "jetfleet_http_requests_in_flight", "jetfleet_http_draining",
		"jetfleet_queue_ready_jobs", "jetfleet_queue_in_flight_jobs", "jetfleet_queue_scheduled_jobs", "jetfleet_queue_failed_jobs",
		"jetfleet_queue_oldest_ready_age_seconds", "jetfleet_queue_paused", "jetfleet_queue_workers", "jetfleet_workers", "jetfleet_queue_stats_success",
		"jetfleet_session_loads_total", "jetfleet_session_saves_total", "jetfleet_session_conflicts_total", "jetfleet_session_store_errors_total",
		"jetfleet_session_evicted_total",
		"jetfleet_db_reads_total", "jetfleet_db_member_up", "jetfleet_db_member_in_pool",
		"jetfleet_jobs_started_total", "jetfleet_job_run_duration_seconds", "jetfleet_job_wait_duration_seconds",
	); len(missing) > 0 {
		t.Errorf("families missing: %v\nhave:\n%s", missing, f)
	}
	for name, min := range map[string]float64{
		"jetfleet_session_saves_total":           1,
		"jetfleet_db_reads_total":                1,
		"jetfleet_queue_stats_success":           1,
		"jetfleet_http_request_duration_seconds": 5,
	} {
		if got := f.Sum(name); got < min {
			t.Errorf("%s = %v, want at least %v", name, got, min)
		}
	}
	if got := f.Sum("jetfleet_http_requests_total", "route", "GET /items/{id}"); got != 1 {
		t.Errorf("requests on GET /items/{id} = %v, want 1", got)
	}
	for _, route := range f.Labels("jetfleet_http_requests_total", "route") {
		if strings.Contains(route, "12345") || strings.Contains(route, "4711") {
			t.Errorf("a raw path became a route label: %q", route)
		}
	}
}

// TestUnknownKindsShareOneLabel: jobs of kinds no handler serves, however
// many kinds are made up, add one kind label value to a worker's metrics,
// metrics.UnknownKind; the registered kinds keep their own.
func TestUnknownKindsShareOneLabel(t *testing.T) {
	f := newFleet(t)
	port := natstest.FreePorts(t, 1)[0]
	f.startWorker(nil, "--queue", "reports", "--metrics-listen", fmt.Sprintf("127.0.0.1:%d", port))
	for i := range 5 {
		if _, err := f.d.DispatchJSON(context.Background(), fmt.Sprintf("made-up-%d", i), []byte(`{}`), bus.OnQueue("reports")); err != nil {
			t.Fatal(err)
		}
	}
	f.dispatch("reports", workers.Fail{}, bus.Tries(1))
	var fam promtest.Families
	eventually(t, 60*time.Second, "6 dead letters on the worker's /metrics", func() (err error) {
		if fam, err = promtest.Scrape(fmt.Sprintf("http://127.0.0.1:%d/metrics", port)); err != nil {
			return err
		}
		if dead := fam.Sum("jetfleet_jobs_dead_lettered_total"); dead != 6 {
			return fmt.Errorf("dead-lettered %v", dead)
		}
		return nil
	})
	kinds := fam.Labels("jetfleet_jobs_dead_lettered_total", "kind")
	slices.Sort(kinds)
	if want := []string{metrics.UnknownKind, "jetfleet-fail"}; !slices.Equal(kinds, want) {
		t.Errorf("kind labels of dead letters = %q, want %q", kinds, want)
	}
	if got := fam.Sum("jetfleet_jobs_dead_lettered_total", "kind", metrics.UnknownKind); got != 5 {
		t.Errorf("dead letters of unknown kinds = %v, want 5", got)
	}
}
