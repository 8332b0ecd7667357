package metrics_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/metrics"
	"github.com/jetfleet/jetfleet/readmodel"
)

// TestAlertRulesUseExposedMetrics: every jetfleet_* metric that
// deploy/prometheus/alerts.yml names is exposed by a process that
// registers all of this package's collectors, so renaming a metric
// without the rules fails here.
func TestAlertRulesUseExposedMetrics(t *testing.T) {
	rules, err := os.ReadFile("../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "default")
	in, _ := bus.NewInspector(e.js, bus.Config{})
	if _, err := metrics.NewQueueCollector(e.reg, in, metrics.QueueConfig{}); err != nil {
		t.Fatal(err)
	}
	replica := func() []readmodel.MemberState {
		return []readmodel.MemberState{{Addr: "10.0.0.2:3306", Role: readmodel.RoleReplica, Up: true, InPool: true, Lag: time.Second}}
	}
	if err := metrics.RegisterDBMembers(e.reg, replica); err != nil {
		t.Fatal(err)
	}
	// One job through the middleware, so the per-job families have series.
	job := &bus.Job{Queue: "default", Kind: "noop", Attempt: 1, EnqueuedAt: time.Now()}
	if err := e.jobs.Middleware()(func(context.Context, *bus.Job) error { return nil })(context.Background(), job); err != nil {
		t.Fatal(err)
	}
	f := e.scrape(t)
	seen := map[string]bool{}
	for _, name := range regexp.MustCompile(`jetfleet_[a-z_]*[a-z]`).FindAllString(string(rules), -1) {
		base := name
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			base = strings.TrimSuffix(base, suffix)
		}
		if seen[base] {
			continue
		}
		seen[base] = true
		if f[base] == nil {
			t.Errorf("alerts.yml uses %s, which no collector exposes", name)
		}
	}
	if len(seen) < 5 {
		t.Fatalf("found only %d metric names in alerts.yml: %v", len(seen), seen)
	}
}
