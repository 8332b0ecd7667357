package metrics

import (
	"context"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/workers"
)

// Per-kind figures for the dashboard (jobs per minute and run-time
// percentiles of each job kind over the last hour), from the same samples
// as the throughput chart: each Sample carries, per kind, its cumulative
// outcomes and a histogram of its attempts' run times (RunTimeBounds), so
// a reader diffs a worker's consecutive samples as Throughput does. No
// per-job write is needed.

// RunTimeBounds are the upper bounds, in seconds, of the run-time
// histogram of KindCounts (the last bucket holds the longer ones): from
// 100 µs, for quick jobs, to ten minutes.
var RunTimeBounds = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// KindCounts are a worker's cumulative outcomes of one job kind and the
// run times of its attempts: RunTime[i] attempts took at most
// RunTimeBounds[i] seconds and more than the bound before; the last
// element counts those longer than every bound.
type KindCounts struct {
	SampleCounts
	RunTime []uint64 `json:"run_time,omitempty"`
}

func (s *Sampler) kind(kind string) *KindCounts {
	if s.known != nil && !s.known[kind] {
		kind = UnknownKind
	}
	k := s.kinds[kind]
	if k == nil {
		k = &KindCounts{RunTime: make([]uint64, len(RunTimeBounds)+1)}
		s.kinds[kind] = k
	}
	return k
}

// LimitKinds makes kinds (a worker's registered kinds) the only kinds the
// samples name, as Jobs.LimitKinds does for the metrics: every other kind,
// such as one published raw that no handler serves, is counted under
// UnknownKind, so a publisher cannot grow every sample with made-up kinds.
// Call it once the handlers are registered.
func (s *Sampler) LimitKinds(kinds []string) {
	known := make(map[string]bool, len(kinds))
	for _, k := range kinds {
		known[k] = true
	}
	s.mu.Lock()
	s.known = known
	s.mu.Unlock()
}

// kindsSnapshot copies the per-kind counts; s.mu is held.
func (s *Sampler) kindsSnapshot() map[string]KindCounts {
	if len(s.kinds) == 0 {
		return nil
	}
	out := make(map[string]KindCounts, len(s.kinds))
	for k, c := range s.kinds {
		out[k] = KindCounts{SampleCounts: c.SampleCounts, RunTime: slices.Clone(c.RunTime)}
	}
	return out
}

// Middleware measures each attempt's run time for the per-kind figures;
// add it to workers.Config.Middleware beside Observe as OnOutcome.
func (s *Sampler) Middleware() workers.Middleware {
	return func(next workers.HandlerFunc) workers.HandlerFunc {
		return func(ctx context.Context, job *bus.Job) error {
			began := time.Now()
			defer func() { s.observeRun(job.Kind, time.Since(began)) }()
			return next(ctx, job)
		}
	}
}

func (s *Sampler) observeRun(kind string, d time.Duration) {
	i := sort.SearchFloat64s(RunTimeBounds, d.Seconds())
	s.mu.Lock()
	s.kind(kind).RunTime[i]++
	s.mu.Unlock()
}

// KindStat is one job kind over a span of time, fleet-wide.
type KindStat struct {
	// Kind is the job kind.
	Kind string
	// Succeeded, Retried, DeadLettered and Cancelled count its outcomes.
	Succeeded, Retried, DeadLettered, Cancelled uint64
	// PerMinute is how many of its jobs finished (succeeded, dead or
	// cancelled) per minute over the span.
	PerMinute float64
	// Attempts is how many attempts the run times were measured on.
	Attempts uint64
	// P50, P95 and P99 are run-time percentiles, estimated from the
	// histogram by linear interpolation in a bucket (an attempt longer
	// than every bound counts as the last bound).
	P50, P95, P99 time.Duration
}

// KindStats turns samples into per-kind figures over the span ending at
// end: each worker's consecutive samples are diffed, as in Throughput.
// Sorted by kind.
func KindStats(samples []Sample, end time.Time, span time.Duration) []KindStat {
	start := end.Add(-span)
	type acc struct {
		counts SampleCounts
		hist   []uint64
	}
	byKind := map[string]*acc{}
	prev := map[string]Sample{}
	for _, s := range samples {
		p, seen := prev[s.Worker]
		prev[s.Worker] = s
		if !seen || !s.At.After(start) {
			continue
		}
		for kind, c := range s.Kinds {
			b := p.Kinds[kind]
			a := byKind[kind]
			if a == nil {
				a = &acc{hist: make([]uint64, len(RunTimeBounds)+1)}
				byKind[kind] = a
			}
			a.counts.Succeeded += c.Succeeded - min(b.Succeeded, c.Succeeded)
			a.counts.Retried += c.Retried - min(b.Retried, c.Retried)
			a.counts.DeadLettered += c.DeadLettered - min(b.DeadLettered, c.DeadLettered)
			a.counts.Cancelled += c.Cancelled - min(b.Cancelled, c.Cancelled)
			for i := range min(len(c.RunTime), len(a.hist)) {
				var before uint64
				if i < len(b.RunTime) {
					before = b.RunTime[i]
				}
				a.hist[i] += c.RunTime[i] - min(before, c.RunTime[i])
			}
		}
	}
	var out []KindStat
	for kind, a := range byKind {
		ks := KindStat{Kind: kind, Succeeded: a.counts.Succeeded, Retried: a.counts.Retried, DeadLettered: a.counts.DeadLettered, Cancelled: a.counts.Cancelled}
		ks.PerMinute = float64(ks.Succeeded+ks.DeadLettered+ks.Cancelled) / span.Minutes()
		for _, n := range a.hist {
			ks.Attempts += n
		}
		ks.P50, ks.P95, ks.P99 = percentile(a.hist, 0.50), percentile(a.hist, 0.95), percentile(a.hist, 0.99)
		out = append(out, ks)
	}
	slices.SortFunc(out, func(a, b KindStat) int { return strings.Compare(a.Kind, b.Kind) })
	return out
}

// percentile estimates the q-quantile of a run-time histogram; 0 when it
// is empty.
func percentile(hist []uint64, q float64) time.Duration {
	var total uint64
	for _, n := range hist {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen float64
	for i, n := range hist {
		if n == 0 {
			continue
		}
		if seen+float64(n) >= rank {
			if i >= len(RunTimeBounds) {
				return seconds(RunTimeBounds[len(RunTimeBounds)-1])
			}
			lo := 0.0
			if i > 0 {
				lo = RunTimeBounds[i-1]
			}
			frac := (rank - seen) / float64(n)
			return seconds(lo + (RunTimeBounds[i]-lo)*math.Max(0, math.Min(1, frac)))
		}
		seen += float64(n)
	}
	return seconds(RunTimeBounds[len(RunTimeBounds)-1])
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
