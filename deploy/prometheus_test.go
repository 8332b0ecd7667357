package deploy_test

import (
	"strings"
	"testing"
	"time"
)

// TestPrometheusRules checks the alerting rules and the sample
// configuration with promtool, and runs the rules' unit tests
// (prometheus/alerts_test.yml): each alert fires on the series it is
// meant for, after its `for`, and not on the others.
func TestPrometheusRules(t *testing.T) {
	t.Parallel()
	promtool := tool(t, "promtool", "prometheus")
	for _, args := range [][]string{
		{"check", "rules", "prometheus/alerts.yml"},
		{"check", "config", "prometheus/prometheus.yml"},
		{"test", "rules", "prometheus/alerts_test.yml"},
	} {
		out, err := run(t, time.Minute, nil, promtool, args...)
		if err != nil || !strings.Contains(out, "SUCCESS") {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
