package workers

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/bus"
)

// Pure functions of the worker runtime, without a server: everything that
// talks to NATS is tested against a real one in the other test files.

func TestRetryDelayUsesTheListThenItsLastValue(t *testing.T) {
	t.Parallel()
	delays := []time.Duration{time.Second, 10 * time.Second, time.Minute}
	for attempt, want := range map[int]time.Duration{
		1: time.Second, 2: 10 * time.Second, 3: time.Minute, 4: time.Minute, 50: time.Minute,
	} {
		if got := retryDelay(delays, attempt); got != want {
			t.Errorf("retryDelay(%v, %d) = %s, want %s", delays, attempt, got, want)
		}
	}
	if got := retryDelay([]time.Duration{0}, 3); got != 0 {
		t.Errorf("retryDelay([0], 3) = %s, want 0: a zero delay retries at once", got)
	}
}

// Without a list: 1s doubling per attempt, at most 10m, each within ±25%
// jitter, and the jitter varies.
func TestRetryDelayDefaultIsExponentialWithJitter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		attempt int
		base    time.Duration
	}{
		{1, time.Second},
		{2, 2 * time.Second},
		{3, 4 * time.Second},
		{6, 32 * time.Second},
		{10, 512 * time.Second},
		{11, 10 * time.Minute},
		{64, 10 * time.Minute}, // no overflow of the shift
		{1000, 10 * time.Minute},
	} {
		lo, hi := tc.base*3/4, tc.base*5/4
		seen := map[time.Duration]bool{}
		for range 200 {
			d := retryDelay(nil, tc.attempt)
			if d < lo || d > hi {
				t.Fatalf("attempt %d: delay %s outside %s..%s", tc.attempt, d, lo, hi)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Errorf("attempt %d: 200 delays were all %v: no jitter", tc.attempt, seen)
		}
	}
}

func TestParseQueues(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		specs    []string
		want     []queue
		weighted bool
	}{
		{[]string{"default"}, []queue{{"default", 1}}, false},
		{[]string{"high", "default", "low"}, []queue{{"high", 1}, {"default", 1}, {"low", 1}}, false},
		{[]string{" high ", "default"}, []queue{{"high", 1}, {"default", 1}}, false},
		{[]string{"high:6", "default:3", "low:1"}, []queue{{"high", 6}, {"default", 3}, {"low", 1}}, true},
		{[]string{"high:6", "default"}, []queue{{"high", 6}, {"default", 1}}, true}, // one weight makes all weighted
		{nil, nil, false},
	} {
		qs, weighted, err := parseQueues(tc.specs)
		if err != nil || !slices.Equal(qs, tc.want) || weighted != tc.weighted {
			t.Errorf("parseQueues(%q) = %v, %v, %v; want %v, %v", tc.specs, qs, weighted, err, tc.want, tc.weighted)
		}
	}
	for specs, want := range map[string]string{
		"High":      `queue name "High" may only use`,
		"a.b":       `queue name "a.b" may only use`,
		"":          "queue name is empty",
		"a,a":       `queue "a" is listed twice`,
		"a:1,a:2":   `queue "a" is listed twice`,
		"a:0":       `queue "a:0": weight "0" is not an integer ≥ 1`,
		"a:-1":      `weight "-1" is not an integer ≥ 1`,
		"a:x":       `weight "x" is not an integer ≥ 1`,
		"a:":        `weight "" is not an integer ≥ 1`,
		"a:1.5":     `weight "1.5" is not an integer ≥ 1`,
		"high:2,Lo": `queue name "Lo" may only use`,
	} {
		qs, _, err := parseQueues(strings.Split(specs, ","))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "workers: ") {
			t.Errorf("parseQueues(%q) = %v, %v; want an error containing %q", specs, qs, err, want)
		}
	}
}

func TestFetchOrderStrictKeepsTheConfiguredOrder(t *testing.T) {
	t.Parallel()
	qs := []queue{{"high", 1}, {"default", 1}, {"low", 1}}
	for range 100 {
		if got := fetchOrder(qs, false); !slices.Equal(got, qs) {
			t.Fatalf("strict fetchOrder = %v, want %v", got, qs)
		}
	}
}

// Weighted: every round asks each queue once, and a queue comes first about
// as often as its share of the weights (6:3:1 → 60%, 30%, 10%). The bounds
// are six standard deviations of 10,000 draws wide.
func TestFetchOrderWeightedFollowsTheWeights(t *testing.T) {
	t.Parallel()
	qs := []queue{{"high", 6}, {"default", 3}, {"low", 1}}
	orig := slices.Clone(qs)
	const rounds = 10_000
	first := map[string]int{}
	for range rounds {
		order := fetchOrder(qs, true)
		names := make([]string, len(order))
		for i, q := range order {
			names[i] = q.name
		}
		slices.Sort(names)
		if !slices.Equal(names, []string{"default", "high", "low"}) {
			t.Fatalf("weighted round %v does not ask each queue once", order)
		}
		first[order[0].name]++
	}
	if !slices.Equal(qs, orig) {
		t.Fatalf("fetchOrder changed its argument: %v", qs)
	}
	for name, share := range map[string]float64{"high": 0.6, "default": 0.3, "low": 0.1} {
		if got := float64(first[name]) / rounds; got < share-0.03 || got > share+0.03 {
			t.Errorf("%s came first in %.3f of rounds, want %.1f ± 0.03", name, got, share)
		}
	}
}

func TestPullStatus(t *testing.T) {
	t.Parallel()
	status := func(code, desc string) *nats.Msg {
		h := nats.Header{}
		h.Set("Status", code)
		if desc != "" {
			h.Set("Description", desc)
		}
		return &nats.Msg{Header: h}
	}
	for _, tc := range []struct {
		name    string
		msg     *nats.Msg
		done    bool
		wantErr string
	}{
		{"a job", &nats.Msg{Data: []byte(`{}`), Header: nats.Header{"Nats-Msg-Id": {"a"}}}, false, ""},
		{"a job with an empty body and headers", &nats.Msg{Header: nats.Header{"Jetfleet-Tries": {"2"}}}, false, ""},
		{"a job with an empty body and no headers", &nats.Msg{}, false, ""},
		{"no messages", status("404", "No Messages"), true, ""},
		{"request timeout", status("408", "Request Timeout"), true, ""},
		{"heartbeat", status("100", "Idle Heartbeat"), false, ""},
		{"consumer deleted", status("409", "Consumer Deleted"), true, "workers: pull ended with status 409 Consumer Deleted"},
		{"leadership change", status("409", "Leadership Change"), true, "status 409 Leadership Change"},
		{"unknown status", status("503", ""), true, "status 503"},
		{"a body beats a status header", &nats.Msg{Data: []byte("x"), Header: status("404", "").Header}, false, ""},
	} {
		done, err := pullStatus(tc.msg)
		if done != tc.done || (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: pullStatus = %v, %v; want %v and error %q", tc.name, done, err, tc.done, tc.wantErr)
		}
	}
}

// Without a prefetch a free slot is filled at once; with one, a fetch waits
// until half of what the worker may hold is free, so each pull is a batch.
func TestRefillAt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ ahead, concurrency, want int }{
		{0, 1, 1},
		{0, 16, 1},
		{1, 1, 1},
		{16, 16, 16},
		{160, 16, 88},
		{500, 10, 255},
	} {
		if got := refillAt(tc.ahead, tc.concurrency); got != tc.want {
			t.Errorf("refillAt(ahead %d, concurrency %d) = %d, want %d", tc.ahead, tc.concurrency, got, tc.want)
		}
	}
}

// A job's own setting beats its handler's, which beats the worker's.
func TestSettingsPrecedence(t *testing.T) {
	t.Parallel()
	if got := firstPositive(0, 5, 3); got != 5 {
		t.Errorf("firstPositive(0, 5, 3) = %d, want 5", got)
	}
	if got := firstPositive(-1, 0, 3); got != 3 {
		t.Errorf("firstPositive(-1, 0, 3) = %d, want 3", got)
	}
	if got := firstPositive(0, 0); got != 0 {
		t.Errorf("firstPositive(0, 0) = %d, want 0", got)
	}
	if got := firstPositive(2*time.Second, time.Minute); got != 2*time.Second {
		t.Errorf("firstPositive(2s, 1m) = %s, want 2s", got)
	}
	if got := firstNonEmpty(nil, []time.Duration{}, []time.Duration{time.Second}, []time.Duration{time.Hour}); !slices.Equal(got, []time.Duration{time.Second}) {
		t.Errorf("firstNonEmpty = %v, want [1s]", got)
	}
	if got := firstNonEmpty(nil, nil); got != nil {
		t.Errorf("firstNonEmpty of nothing = %v, want nil", got)
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c := Config{}.withDefaults()
	if !slices.Equal(c.Queues, []string{"default"}) || c.Concurrency != 10 || c.Tries != 3 || c.Timeout != time.Minute ||
		c.Grace != 30*time.Second || c.PresenceInterval != 5*time.Second || c.MaxJobs != 0 || c.Backoff != nil {
		t.Errorf("Config{}.withDefaults() = %+v", c)
	}
	set := Config{Queues: []string{"high"}, Concurrency: 2, Tries: 7, Timeout: time.Second, Grace: time.Second, PresenceInterval: time.Second}
	if c := set.withDefaults(); !slices.Equal(c.Queues, set.Queues) || c.Concurrency != 2 || c.Tries != 7 || c.Timeout != time.Second ||
		c.Grace != time.Second || c.PresenceInterval != time.Second {
		t.Errorf("set values were changed: %+v", c)
	}
	if c := (Config{PresenceInterval: time.Hour}).withDefaults(); c.PresenceInterval != bus.MaxPresenceInterval {
		t.Errorf("PresenceInterval 1h became %s, want the cap %s", c.PresenceInterval, bus.MaxPresenceInterval)
	}
	if c := (Config{StuckAfter: time.Second}).withDefaults(); c.StuckAfter != MinStuckAfter {
		t.Errorf("StuckAfter 1s became %s, want the least, %s: a turn may wait 5s for a pull", c.StuckAfter, MinStuckAfter)
	}
	if c := (Config{StuckAfter: 2 * time.Minute}).withDefaults(); c.StuckAfter != 2*time.Minute {
		t.Errorf("StuckAfter 2m became %s", c.StuckAfter)
	}
	if c := (Config{Concurrency: -3, Tries: -1}).withDefaults(); c.Concurrency != 10 || c.Tries != 3 {
		t.Errorf("negative values: concurrency %d, tries %d; want the defaults 10 and 3", c.Concurrency, c.Tries)
	}
}

// The presence tally counts settled outcomes per queue of the job subject;
// a hand-back is not an outcome of the job.
func TestTallyCountsSettledOutcomesPerQueue(t *testing.T) {
	t.Parallel()
	tl := newTally()
	high, def := tl.counter("jobs.high.resize"), tl.counter("jobs.default.email")
	for _, o := range []string{"acked", "acked", "retry", "dead-lettered", "terminated", "handed back", "dead-letter failed"} {
		high(o)
	}
	def("acked")
	snap := tl.snapshot()
	if got, want := snap["high"], (bus.JobCounts{Processed: 2, Retried: 1, Failed: 2}); got != want {
		t.Errorf("high = %+v, want %+v", got, want)
	}
	if got, want := snap["default"], (bus.JobCounts{Processed: 1}); got != want {
		t.Errorf("default = %+v, want %+v", got, want)
	}
	snap["high"] = bus.JobCounts{}
	if tl.snapshot()["high"].Processed != 2 {
		t.Error("changing a snapshot changed the tally")
	}
}

// The last-minute counts are the totals less the newest sample at least a
// minute old; samples older than that one are dropped.
func TestLastMinuteCounts(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	counts := func(p uint64) map[string]bus.JobCounts { return map[string]bus.JobCounts{"high": {Processed: p}} }
	r := &reporter{samples: []sample{
		{at: t0, totals: counts(0)},
		{at: t0.Add(30 * time.Second), totals: counts(5)},
		{at: t0.Add(60 * time.Second), totals: counts(8)},
		{at: t0.Add(90 * time.Second), totals: counts(20)},
	}}
	now := t0.Add(125 * time.Second) // a minute ago: 65s, after the sample at 60s
	if base := r.baseline(now); base["high"].Processed != 8 {
		t.Errorf("baseline at %s = %+v, want the sample of 60s (8 processed)", now.Sub(t0), base)
	}
	if len(r.samples) != 2 || !r.samples[0].at.Equal(t0.Add(60*time.Second)) {
		t.Errorf("samples kept: %d, first at %s; want 2 from 60s", len(r.samples), r.samples[0].at.Sub(t0))
	}
	young := &reporter{samples: []sample{{at: t0, totals: counts(0)}, {at: t0.Add(10 * time.Second), totals: counts(3)}}}
	if base := young.baseline(t0.Add(20 * time.Second)); base["high"].Processed != 0 || len(young.samples) != 2 {
		t.Errorf("a worker younger than a minute: baseline %+v, %d samples; want the start (0) and both kept", base, len(young.samples))
	}

	got := lastMinute(
		map[string]bus.JobCounts{"high": {Processed: 30, Retried: 4, Failed: 2}, "low": {Processed: 1}},
		map[string]bus.JobCounts{"high": {Processed: 10, Retried: 1, Failed: 2}},
	)
	want := map[string]bus.JobCounts{
		"high": {Processed: 30, Retried: 4, Failed: 2, ProcessedLastMinute: 20, RetriedLastMinute: 3},
		"low":  {Processed: 1, ProcessedLastMinute: 1},
	}
	if len(got) != len(want) || got["high"] != want["high"] || got["low"] != want["low"] {
		t.Errorf("lastMinute = %+v, want %+v", got, want)
	}
}

// TestErrorTextIsBounded: a record's error is at most 4 KiB with its
// truncation marker, and never ends in half a UTF-8 character.
func TestErrorTextIsBounded(t *testing.T) {
	for _, s := range []string{strings.Repeat("é", 3000), "x" + strings.Repeat("€", 2000), strings.Repeat("a", maxRecordError)} {
		got := errorText(errors.New(s))
		if len(got) > maxRecordError || !utf8.ValidString(got) {
			t.Errorf("errorText of %d bytes: %d bytes, valid UTF-8 %v", len(s), len(got), utf8.ValidString(got))
		}
		if len(s) > maxRecordError && !strings.HasSuffix(got, " …[truncated]") {
			t.Errorf("errorText of %d bytes does not say it was cut: …%q", len(s), got[len(got)-20:])
		}
		if len(s) <= maxRecordError && got != s {
			t.Errorf("errorText cut a text of %d bytes", len(s))
		}
	}
}

// TestWeightedFetchesFollowTheWeightsWhateverTheFreePlaces: with every
// queue backlogged, what fetchAndStart takes from each queue (its share)
// follows the weights 6:3:1 however few places are free, even fewer than
// there are queues, and the shares use every free place.
func TestWeightedFetchesFollowTheWeightsWhateverTheFreePlaces(t *testing.T) {
	t.Parallel()
	qs := []queue{{"high", 6}, {"default", 3}, {"low", 1}}
	for _, free := range []int{1, 2, 3, 5, 7, 10, 16} {
		got := map[string]int{}
		const rounds = 50_000
		for range rounds {
			order := fetchOrder(qs, true)
			taken := 0
			for i, share := range weightedShares(order, free, rand.IntN) {
				got[order[i].name] += share
				taken += share
			}
			if taken != free {
				t.Fatalf("%d free places shared as %d", free, taken)
			}
		}
		for name, want := range map[string]float64{"high": 0.6, "default": 0.3, "low": 0.1} {
			if share := float64(got[name]) / float64(rounds*free); share < want-0.03 || share > want+0.03 {
				t.Errorf("%d free places: %s got %.3f of the jobs, want %.1f ± 0.03", free, name, share, want)
			}
		}
	}
}
