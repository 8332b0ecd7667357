package dashboard

import (
	"math"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/metrics"
)

// The chart's arithmetic and the page's small formats, without a server.

func TestNiceMaxIsOneTwoOrFiveTimesAPowerOfTen(t *testing.T) {
	t.Parallel()
	for peak, want := range map[uint64]uint64{
		0: 10, 1: 10, 10: 10, 11: 20, 20: 20, 21: 50, 50: 50, 51: 100, 99: 100,
		101: 200, 499: 500, 501: 1000, 1_000_000: 1_000_000, 1_000_001: 2_000_000,
	} {
		if got := niceMax(peak); got != want {
			t.Errorf("niceMax(%d) = %d, want %d", peak, got, want)
		}
	}
}

// Each minute is one bar of equal width: its succeeded part stands on the
// axis, its failed part on top, both to the axis' scale.
func TestChartBarsAreStackedToScale(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	buckets := []metrics.Bucket{
		{Start: t0, Succeeded: 30, DeadLettered: 10},
		{Start: t0.Add(time.Minute)},
		{Start: t0.Add(2 * time.Minute), Succeeded: 5},
		{Start: t0.Add(3 * time.Minute), DeadLettered: 2},
	}
	c := newChart(buckets, t0.Add(4*time.Minute))
	if c.Empty || c.Succeeded != 35 || c.Failed != 12 || c.Peak != 40 || c.Max != 50 || c.Mid != 25 || len(c.Bars) != 4 || len(c.Minutes) != 3 {
		t.Fatalf("chart = %+v", c)
	}
	scale := (plotBottom - plotTop) / 50
	step := (plotRight - plotLeft) / 4
	for i, b := range c.Bars {
		in := buckets[i]
		near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
		if !near(b.OkH, float64(in.Succeeded)*scale) || !near(b.BadH, float64(in.DeadLettered)*scale) ||
			!near(b.OkY+b.OkH, plotBottom) || !near(b.BadY+b.BadH, b.OkY) ||
			!near(b.X, plotLeft+float64(i)*step+barGap/2) || !near(b.W, step-barGap) {
			t.Errorf("bar %d = %+v", i, b)
		}
	}
	if top := c.Bars[0].BadY; top < plotTop {
		t.Errorf("the busiest bar rises above the plot: %f < %f", top, plotTop)
	}
	if got := c.Bars[0].Label(); got != "12:00: 30 succeeded, 10 failed" {
		t.Errorf("Label = %q", got)
	}
	if e := newChart(nil, t0); !e.Empty || len(e.Bars) != 0 || e.Max != 10 {
		t.Errorf("chart of no samples = %+v, want empty with an axis to 10", e)
	}
}

func TestAgeAndAgo(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0: "—", -time.Second: "—", 45 * time.Second: "45s", 59*time.Second + 999*time.Millisecond: "59s",
		time.Minute: "1m", 12*time.Minute + 30*time.Second: "12m", time.Hour: "1h", 47 * time.Hour: "47h",
		48 * time.Hour: "2d", 10 * 24 * time.Hour: "10d",
	} {
		if got := age(d); got != want {
			t.Errorf("age(%s) = %q, want %q", d, got, want)
		}
	}
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	for at, want := range map[time.Time]string{
		{}:                               "never",
		now:                              "just now",
		now.Add(-999 * time.Millisecond): "just now",
		now.Add(-90 * time.Second):       "1m ago",
		now.Add(-3 * time.Hour):          "3h ago",
	} {
		if got := ago(now, at); got != want {
			t.Errorf("ago(%s) = %q, want %q", now.Sub(at), got, want)
		}
	}
}

func TestNotice(t *testing.T) {
	t.Parallel()
	if got := notice(url.Values{"done": {"paused"}, "n": {"high"}}); got != "Paused queue high: workers take no new job from it." {
		t.Errorf("notice(paused) = %q", got)
	}
	if got := notice(url.Values{"done": {"<script>"}, "n": {"x"}}); got != "" {
		t.Errorf("an unknown notice = %q, want none", got)
	}
}

// A notice's n shows only when it is what its code takes: a count, a
// queue name, a batch ID, a job ID of one word; anything else is no
// banner at all.
func TestNoticeShowsOnlyWhatItsCodeTakes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		done, n string
		shown   bool
	}{
		{"retried", "12", true}, {"retried", "0", true}, {"forgotten", "3", true},
		{"retried", "-1", false}, {"retried", "+1", false}, {"retried", "1.5", false}, {"retried", "", false},
		{"retried", "Call 555-0100 to restore your account", false}, {"forgotten", "99999999999999999999999", false},
		{"paused", "high", true}, {"resumed", "emails_2", true}, {"paused", "Your queue", false}, {"resumed", "", false},
		{"cancelled", "order-42", true}, {"cancelled", "01J9ZK:7", true},
		{"cancelled", "order 42", false}, {"cancelled", "a\u00a0b", false}, {"cancelled", "x\x07", false},
		{"cancelled", strings.Repeat("x", 257), false},
		{"batch-cancelled", "b-1", true}, {"batch-cancelled", "b 1", false},
	} {
		got := notice(url.Values{"done": {c.done}, "n": {c.n}})
		if shown := got != ""; shown != c.shown || shown && !strings.Contains(got, c.n) {
			t.Errorf("notice(done=%s, n=%q) = %q; want shown %v", c.done, c.n, got, c.shown)
		}
	}
}
