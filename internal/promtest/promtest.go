// Package promtest scrapes a real /metrics endpoint for tests and reads
// values out of the parsed families: the tests check what Prometheus would
// see, not the collectors' internals.
package promtest

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are the metric families of one scrape, by name.
type Families map[string]*dto.MetricFamily

// Scrape GETs url (a /metrics endpoint) and parses its text exposition.
func Scrape(url string) (Families, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, fmt.Errorf("promtest: scrape %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return nil, fmt.Errorf("promtest: scrape %s: %s: %s", url, resp.Status, body)
	}
	return Parse(resp.Body)
}

// Parse reads the Prometheus text exposition format.
func Parse(r io.Reader) (Families, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("promtest: parse: %w", err)
	}
	return Families(fams), nil
}

// Names lists the families, sorted.
func (f Families) Names() []string {
	out := make([]string, 0, len(f))
	for n := range f {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Sum adds up the values of every series of family name whose labels
// include all of match (label, value, label, value...): counters, gauges
// and untyped metrics by value, histograms by their sample count. A missing
// family sums to 0.
func (f Families) Sum(name string, match ...string) float64 {
	fam := f[name]
	if fam == nil {
		return 0
	}
	total := 0.0
	for _, m := range fam.GetMetric() {
		if matches(m, match) {
			total += value(m)
		}
	}
	return total
}

// Labels lists the distinct values of label in family name, sorted.
func (f Families) Labels(name, label string) []string {
	seen := map[string]bool{}
	if fam := f[name]; fam != nil {
		for _, m := range fam.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label {
					seen[lp.GetValue()] = true
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

// Missing returns the names in want that the scrape lacks.
func (f Families) Missing(want ...string) []string {
	var out []string
	for _, n := range want {
		if f[n] == nil {
			out = append(out, n)
		}
	}
	return out
}

func matches(m *dto.Metric, match []string) bool {
	for i := 0; i+1 < len(match); i += 2 {
		found := false
		for _, lp := range m.GetLabel() {
			if lp.GetName() == match[i] && lp.GetValue() == match[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// String lists the families and their series count, for test failures.
func (f Families) String() string {
	var b strings.Builder
	for _, n := range f.Names() {
		fmt.Fprintf(&b, "%s (%d series)\n", n, len(f[n].GetMetric()))
	}
	return b.String()
}
