package metrics_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/logtest"
	"github.com/jetfleet/jetfleet/metrics"
	"github.com/jetfleet/jetfleet/workers"
)

// TestSamplerFeedsThroughput runs a real worker whose outcomes feed a
// Sampler publishing to JETFLEET_SAMPLES, and reads the history back: the
// throughput over the last minutes adds up to exactly the jobs run.
func TestSamplerFeedsThroughput(t *testing.T) {
	e := newEnv(t, "default")
	ctx, cancel := context.WithCancel(context.Background())
	log, failures := logtest.New()
	s := metrics.NewSampler(e.js, metrics.SamplerConfig{Interval: 50 * time.Millisecond, Logger: log})
	sampled := make(chan struct{})
	go func() { defer close(sampled); s.Run(ctx) }()
	w := workers.New(e.js, workers.Config{Tries: 1, OnOutcome: metrics.Outcomes(e.jobs.Outcome, s.Observe)})
	workers.RegisterDiagnostics(w)
	d, _ := bus.NewDispatcher(e.js, bus.Config{})
	for range 5 {
		if _, err := d.Dispatch(ctx, workers.Noop{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Dispatch(ctx, workers.Fail{}); err != nil {
		t.Fatal(err)
	}
	run(t, w)

	var total metrics.Bucket
	deadline := time.Now().Add(time.Minute)
	for total.Succeeded != 5 || total.DeadLettered != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("throughput after a minute: %+v, want 5 succeeded and 1 dead-lettered", total)
		}
		time.Sleep(100 * time.Millisecond)
		samples, err := metrics.ReadSamples(ctx, e.js, time.Now().Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		total = metrics.Bucket{}
		for _, b := range metrics.Throughput(samples, time.Now().Add(time.Minute), 10, time.Minute, "") {
			total.Succeeded += b.Succeeded
			total.DeadLettered += b.DeadLettered
		}
	}
	cancel()
	<-sampled
	if logged := failures.Entries(); len(logged) > 0 {
		t.Fatalf("Sampler.Run logged failures: %v", logged)
	}
	info, err := e.js.Stream(context.Background(), metrics.SamplesStream)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := info.CachedInfo().Config; cfg.MaxAge != metrics.SamplesMaxAge || cfg.Subjects[0] != "jetfleet.samples.>" {
		t.Errorf("stream config: MaxAge %s, subjects %v", cfg.MaxAge, cfg.Subjects)
	}
}

// TestSamplerLogsFailuresAtWarn: a Sampler that cannot create its stream
// (another stream holds its subjects) says so at warn on every tick, and
// keeps trying.
func TestSamplerLogsFailuresAtWarn(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := e.js.CreateStream(ctx, jetstream.StreamConfig{Name: "SQUATTER", Subjects: []string{metrics.SamplesPrefix + ".>"}}); err != nil {
		t.Fatal(err)
	}
	log, rec := logtest.New()
	s := metrics.NewSampler(e.js, metrics.SamplerConfig{Interval: 50 * time.Millisecond, Logger: log})
	sampled := make(chan struct{})
	go func() { defer close(sampled); s.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(rec.Entries()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s the Sampler logged %v, want a warning per tick", rec.Entries())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-sampled
	for _, l := range rec.Entries() {
		if l.Str("level") != "warn" || !strings.Contains(l.Str("error"), "overlap") {
			t.Fatalf("logged %v, want a warning naming the subject overlap", l)
		}
	}
	t.Logf("logged: %s: %s", rec.Entries()[0].Str("message"), rec.Entries()[0].Str("error"))
}

// TestThroughputDiffsEachWorker: consecutive samples of each worker are
// diffed into the bucket of the later one; a worker's first sample is only
// its baseline; another queue is left out when one is asked for.
func TestThroughputDiffsEachWorker(t *testing.T) {
	end := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	at := func(minAgo float64) time.Time { return end.Add(-time.Duration(minAgo * float64(time.Minute))) }
	c := func(ok, dead uint64) map[string]metrics.SampleCounts {
		return map[string]metrics.SampleCounts{"default": {Succeeded: ok, DeadLettered: dead}, "other": {Succeeded: 100}}
	}
	samples := []metrics.Sample{
		{Worker: "a", At: at(10), Queues: c(50, 0)}, // before the window: baseline only
		{Worker: "a", At: at(2.5), Queues: c(60, 1)},
		{Worker: "b", At: at(2.2), Queues: c(0, 0)},
		{Worker: "a", At: at(0.5), Queues: c(65, 1)},
		{Worker: "b", At: at(0.4), Queues: c(7, 2)},
	}
	got := metrics.Throughput(samples, end, 3, time.Minute, "default")
	want := [][2]uint64{{10, 1}, {0, 0}, {12, 2}}
	for i, b := range got {
		if b.Succeeded != want[i][0] || b.DeadLettered != want[i][1] {
			t.Errorf("bucket %d (%s): %d succeeded, %d dead-lettered; want %v", i, b.Start.Format("15:04"), b.Succeeded, b.DeadLettered, want[i])
		}
	}
}

// TestSamplesNameOnlyTheWorkersKinds: jobs of kinds no handler serves,
// published raw, are dead-lettered; with LimitKinds their outcomes are
// counted under UnknownKind, so a publisher cannot add an entry per
// made-up kind to every sample the worker publishes.
func TestSamplesNameOnlyTheWorkersKinds(t *testing.T) {
	e := newEnv(t, "default")
	ctx, cancel := context.WithCancel(context.Background())
	s := metrics.NewSampler(e.js, metrics.SamplerConfig{Interval: 50 * time.Millisecond})
	sampled := make(chan struct{})
	go func() { defer close(sampled); s.Run(ctx) }()
	defer func() { cancel(); <-sampled }()
	w := workers.New(e.js, workers.Config{Tries: 1, OnOutcome: s.Observe})
	workers.RegisterDiagnostics(w)
	s.LimitKinds(w.Kinds())
	d, _ := bus.NewDispatcher(e.js, bus.Config{})
	if _, err := d.Dispatch(ctx, workers.Noop{}); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"made-up-1", "made-up-2", "made-up-3"} {
		if _, err := e.js.Publish(ctx, "jobs.default."+kind, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	run(t, w)

	var kinds map[string]metrics.KindCounts
	deadline := time.Now().Add(time.Minute)
	for kinds[metrics.UnknownKind].DeadLettered != 3 || kinds["jetfleet-noop"].Succeeded != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("kinds of the last sample after a minute: %+v; want jetfleet-noop 1 succeeded, %s 3 dead-lettered", kinds, metrics.UnknownKind)
		}
		time.Sleep(100 * time.Millisecond)
		samples, err := metrics.ReadSamples(ctx, e.js, time.Now().Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		if len(samples) > 0 {
			kinds = samples[len(samples)-1].Kinds
		}
	}
	for kind := range kinds {
		if strings.HasPrefix(kind, "made-up") {
			t.Errorf("a sample names the made-up kind %q: %+v", kind, kinds)
		}
	}
}
