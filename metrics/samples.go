package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/workers"
)

// The fleet-wide throughput history. Each worker process runs a Sampler,
// which publishes a Sample of its cumulative job counts per queue every
// SamplerConfig.Interval (10s) to jetfleet.samples.<worker> on the stream
// SamplesStream. The stream keeps SamplesMaxAge (one hour) in memory, so it
// stays small (a few hundred bytes per worker every 10 s: about 130 KB an
// hour for a worker serving three queues) and needs no cleanup. A reader
// (the dashboard, on any node) diffs consecutive samples of each worker:
// every node shows the same picture, and a process that restarts is a new
// worker whose counts start from zero. `nats stream view JETFLEET_SAMPLES`
// shows the samples as JSON.
const (
	// SamplesStream is the stream of the samples.
	SamplesStream = "JETFLEET_SAMPLES"
	// SamplesPrefix is the samples' subject prefix: SamplesPrefix.<worker>.
	SamplesPrefix = "jetfleet.samples"
	// SamplesMaxAge is how long samples are kept.
	SamplesMaxAge = time.Hour
)

// Sample is one worker process's cumulative job counts at a moment.
type Sample struct {
	// Worker identifies the process: host, pid and a random suffix.
	Worker string `json:"worker"`
	// At is when the counts were taken.
	At time.Time `json:"at"`
	// Queues holds the counts per queue since the process started.
	Queues map[string]SampleCounts `json:"queues,omitempty"`
	// Kinds holds the counts per job kind since the process started, with
	// the run times of its attempts (kinds.go).
	Kinds map[string]KindCounts `json:"kinds,omitempty"`
}

// SampleCounts are a worker's cumulative outcomes on one queue.
type SampleCounts struct {
	Succeeded    uint64 `json:"succeeded"`
	Retried      uint64 `json:"retried"`
	DeadLettered uint64 `json:"dead_lettered"`
	Cancelled    uint64 `json:"cancelled,omitempty"`
}

// SamplesStreamConfig is SamplesStream: memory storage, SamplesMaxAge,
// direct gets allowed.
func SamplesStreamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        SamplesStream,
		Description: "jetfleet workers' job counts every few seconds, for the dashboard's throughput chart",
		Subjects:    []string{SamplesPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.MemoryStorage,
		MaxAge:      SamplesMaxAge,
		Discard:     jetstream.DiscardOld,
		Replicas:    max(replicas, 1),
		AllowDirect: true,
	}
}

// SamplerConfig configures a Sampler. The zero value is ready to use.
type SamplerConfig struct {
	// Interval between samples. Default 10s.
	Interval time.Duration
	// Replicas of SamplesStream when the Sampler creates it. Default 1.
	Replicas int
	// Logger receives each failure to create the stream or publish a
	// sample, at warn level. The zero value logs nothing.
	Logger zerolog.Logger
}

// Sampler counts a worker process's job outcomes (Observe, as
// workers.Config.OnOutcome, or with Outcomes beside Jobs.Outcome) and
// publishes them to SamplesStream while Run runs. It is safe for
// concurrent use.
type Sampler struct {
	js  jetstream.JetStream
	cfg SamplerConfig
	id  string

	mu     sync.Mutex
	counts map[string]SampleCounts
	kinds  map[string]*KindCounts
	known  map[string]bool // LimitKinds; nil: every kind is its own
}

var unsafeToken = regexp.MustCompile(`[^a-zA-Z0-9_-]+`)

// NewSampler returns a Sampler publishing through js.
func NewSampler(js jetstream.JetStream, cfg SamplerConfig) *Sampler {
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Second
	}
	host, _ := os.Hostname()
	id := fmt.Sprintf("%s-%d-%s", unsafeToken.ReplaceAllString(host, "_"), os.Getpid(), nuid.Next()[16:])
	return &Sampler{js: js, cfg: cfg, id: id, counts: map[string]SampleCounts{}, kinds: map[string]*KindCounts{}}
}

// Observe counts one outcome, per queue and per kind; use it as
// workers.Config.OnOutcome.
func (s *Sampler) Observe(queue, kind string, o workers.Outcome) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.counts[queue]
	if !c.add(o) {
		return
	}
	s.counts[queue] = c
	s.kind(kind).add(o)
}

// add counts o; false for an outcome the samples do not count.
func (c *SampleCounts) add(o workers.Outcome) bool {
	switch o {
	case workers.Succeeded:
		c.Succeeded++
	case workers.Retried:
		c.Retried++
	case workers.DeadLettered:
		c.DeadLettered++
	case workers.Cancelled:
		c.Cancelled++
	default:
		return false
	}
	return true
}

// Run publishes a sample now, every Interval, and once more when ctx
// ends, then returns. It creates SamplesStream first when it is missing.
// A failure (the stream cannot be created, a publish is not acknowledged)
// costs the chart a point, never a job: it is logged to
// SamplerConfig.Logger and the next tick tries again.
func (s *Sampler) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	ready := false
	for {
		if !ready {
			ready = s.report(ensureSamples(ctx, s.js, s.cfg.Replicas)) == nil
		}
		if ready && errors.Is(s.report(s.publish(ctx)), jetstream.ErrNoStreamResponse) {
			ready = false // the stream is gone (its server restarted: it lives in memory): made again next tick
		}
		select {
		case <-ctx.Done():
			if ready {
				final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
				defer cancel()
				_ = s.publish(final)
			}
			return
		case <-t.C:
		}
	}
}

// report logs err unless it is nil or the run is ending.
func (s *Sampler) report(err error) error {
	if err != nil && !errors.Is(err, context.Canceled) {
		s.cfg.Logger.Warn().Err(err).Msg("metrics: throughput sample not published: the dashboard's chart misses a point")
	}
	return err
}

func (s *Sampler) publish(ctx context.Context) error {
	s.mu.Lock()
	sample := Sample{Worker: s.id, At: time.Now().UTC(), Queues: make(map[string]SampleCounts, len(s.counts))}
	for q, c := range s.counts {
		sample.Queues[q] = c
	}
	sample.Kinds = s.kindsSnapshot()
	s.mu.Unlock()
	data, err := json.Marshal(sample)
	if err != nil {
		return fmt.Errorf("metrics: encode sample: %w", err)
	}
	if _, err := s.js.Publish(ctx, SamplesPrefix+"."+s.id, data); err != nil {
		return fmt.Errorf("metrics: publish sample to %s: %w", SamplesStream, err)
	}
	return nil
}

// ensureSamples creates SamplesStream when it does not exist; an existing
// one is left as the operator set it.
func ensureSamples(ctx context.Context, js jetstream.JetStream, replicas int) error {
	_, err := js.Stream(ctx, SamplesStream)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("metrics: stream %s: %w", SamplesStream, err)
	}
	_, err = js.CreateStream(ctx, SamplesStreamConfig(replicas))
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("metrics: create stream %s: %w", SamplesStream, err)
	}
	return nil
}

// ReadSamples returns the samples stored at or after since, oldest first;
// none when SamplesStream does not exist yet.
func ReadSamples(ctx context.Context, js jetstream.JetStream, since time.Time) ([]Sample, error) {
	st, err := js.Stream(ctx, SamplesStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("metrics: stream %s: %w", SamplesStream, err)
	}
	if st.CachedInfo().State.Msgs == 0 {
		return nil, nil
	}
	c, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &since,
	})
	if err != nil {
		return nil, fmt.Errorf("metrics: read %s: %w", SamplesStream, err)
	}
	return drainSamples(ctx, c)
}

// drainSamples fetches from c until nothing is pending.
func drainSamples(ctx context.Context, c jetstream.Consumer) ([]Sample, error) {
	var out []Sample
	for {
		batch, err := c.FetchNoWait(500)
		if err != nil {
			return nil, fmt.Errorf("metrics: read %s: %w", SamplesStream, err)
		}
		pending := uint64(0)
		for m := range batch.Messages() {
			var s Sample
			if json.Unmarshal(m.Data(), &s) == nil && s.Worker != "" {
				out = append(out, s)
			}
			if meta, err := m.Metadata(); err == nil {
				pending = meta.NumPending
			}
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("metrics: read %s: %w", SamplesStream, err)
		}
		if pending == 0 || ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
}

// Bucket is one interval of the throughput history, fleet-wide.
type Bucket struct {
	// Start is the beginning of the interval.
	Start time.Time
	// Succeeded, Retried and DeadLettered count the outcomes in it.
	Succeeded, Retried, DeadLettered uint64
}

// Throughput turns samples into n buckets of width each, the last one
// ending at end: each worker's consecutive samples are diffed, and the
// difference counts in the bucket of the later sample. queue limits it to
// one queue ("" is all). n and width must be positive.
func Throughput(samples []Sample, end time.Time, n int, width time.Duration, queue string) []Bucket {
	start := end.Add(-time.Duration(n) * width)
	out := make([]Bucket, n)
	for i := range out {
		out[i].Start = start.Add(time.Duration(i) * width)
	}
	prev := map[string]Sample{}
	for _, s := range samples {
		p, seen := prev[s.Worker]
		prev[s.Worker] = s
		if !seen || !s.At.After(start) {
			continue
		}
		// A sample stamped after end (a clock ahead) counts in the last bucket.
		i := min(int(s.At.Sub(start)/width), n-1)
		for q, c := range s.Queues {
			if queue != "" && q != queue {
				continue
			}
			b := p.Queues[q]
			out[i].Succeeded += c.Succeeded - min(b.Succeeded, c.Succeeded)
			out[i].Retried += c.Retried - min(b.Retried, c.Retried)
			out[i].DeadLettered += c.DeadLettered - min(b.DeadLettered, c.DeadLettered)
		}
	}
	return out
}
