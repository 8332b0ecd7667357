package jobbench_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/jetfleet/jetfleet/internal/jobbench"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// TestRunMeasuresBothSides runs a tiny benchmark: every job of every run
// must be processed on both sides and the report must name each figure.
// It asserts completeness, never speed.
func TestRunMeasuresBothSides(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	r, err := jobbench.Run(context.Background(), js, jobbench.Options{N: 500, Concurrency: 4, Rate: 500, LatencyJobs: 100, Rounds: 1})
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]jobbench.Side{"jetfleet": r.Jetfleet, "history off": r.NoHistory, "raw": r.Raw} {
		if s.PublishRate <= 0 || s.ProcessRate <= 0 || s.LatencyCount != 100 || s.LatencyP99 < s.LatencyP50 || s.LatencyP50 <= 0 {
			t.Errorf("%s side incomplete: %+v", name, s)
		}
		// 100 jobs on a 2 ms ticker take at least 200 ms: a rate over the
		// offered one would be a wrong measurement.
		if s.LatencyRate <= 0 || s.LatencyRate > 500*1.01 {
			t.Errorf("%s: latency run sent at %.0f jobs/s, offered 500", name, s.LatencyRate)
		}
	}
	var out bytes.Buffer
	r.Print(&out)
	if r.HistoryRatio <= 0 || len(r.Ratios) != 1 {
		t.Errorf("no history ratio: %+v", r)
	}
	for _, want := range []string{"dispatch (async, acked)", "processed end to end", "dispatch→start p99", "latency run: sent at", "raw JetStream", "history off", "job history's cost"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
