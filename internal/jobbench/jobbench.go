// Package jobbench measures jetfleet's job path against a raw JetStream
// baseline in the same run, on the same server, with the same stream
// settings: publish rate, end-to-end processing rate, and dispatch→start
// latency at a fixed offered load. `jetfleet bench jobs` prints its report.
package jobbench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/workers"
)

// Options sizes a run. Zero values mean the defaults in brackets.
type Options struct {
	// N is the number of jobs in the throughput runs [100000].
	N int
	// Concurrency is the worker's concurrency [16]. The raw consumer is
	// nats.go's Consume() with its defaults (up to 500 messages buffered).
	Concurrency int
	// Rate is the offered load of the latency runs, jobs per second [1000].
	Rate int
	// LatencyJobs is how many jobs each latency run sends [3000].
	LatencyJobs int
}

func (o Options) withDefaults() Options {
	if o.N <= 0 {
		o.N = 100_000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Rate <= 0 {
		o.Rate = 1000
	}
	if o.LatencyJobs <= 0 {
		o.LatencyJobs = 3000
	}
	return o
}

// Side is one column of the report: jetfleet or the raw baseline.
type Side struct {
	PublishRate  float64 // jobs/s stored (async publish, all acks awaited)
	ProcessRate  float64 // jobs/s consumed, run and acknowledged
	LatencyP50   time.Duration
	LatencyP99   time.Duration
	LatencyCount int
}

// Report is the result of Run.
type Report struct {
	Options  Options
	Jetfleet Side
	Raw      Side
}

// benchJob is the no-op job whose body carries its send time.
type benchJob struct {
	SentNS int64 `json:"t"`
}

func (benchJob) Kind() string { return "jetfleet-bench" }

// rawStream is the baseline's stream: JOBS's settings under another name.
const rawStream = "BENCHRAW"

// Run measures both sides on js, which should be a server used only for
// benchmarking: it creates the JOBS topology and a BENCHRAW stream there.
func Run(ctx context.Context, js jetstream.JetStream, opts Options) (Report, error) {
	opts = opts.withDefaults()
	r := Report{Options: opts}
	var err error
	if r.Raw, err = runRaw(ctx, js, opts); err != nil {
		return r, fmt.Errorf("raw baseline: %w", err)
	}
	if r.Jetfleet, err = runJetfleet(ctx, js, opts); err != nil {
		return r, fmt.Errorf("jetfleet: %w", err)
	}
	return r, nil
}

// rawStreamConfig is the JOBS stream's configuration as bus provisions it
// (provisioning it first), renamed for the raw baseline.
func rawStreamConfig(ctx context.Context, js jetstream.JetStream) (jetstream.StreamConfig, error) {
	if err := bus.Provision(ctx, js, bus.Config{}); err != nil {
		return jetstream.StreamConfig{}, err
	}
	s, err := js.Stream(ctx, bus.JobsStream)
	if err != nil {
		return jetstream.StreamConfig{}, err
	}
	sc := s.CachedInfo().Config
	sc.Name, sc.Subjects = rawStream, []string{"benchraw.>"}
	return sc, nil
}

func runRaw(ctx context.Context, js jetstream.JetStream, o Options) (Side, error) {
	var s Side
	sc, err := rawStreamConfig(ctx, js)
	if err != nil {
		return s, err
	}
	if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
		return s, err
	}
	defer js.DeleteStream(context.WithoutCancel(ctx), rawStream)
	cons, err := js.CreateOrUpdateConsumer(ctx, rawStream, jetstream.ConsumerConfig{
		Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: -1, MaxAckPending: 100_000,
	})
	if err != nil {
		return s, err
	}
	publish := func(i int) (jetstream.PubAckFuture, error) {
		body, _ := json.Marshal(benchJob{SentNS: time.Now().UnixNano()})
		return js.PublishMsgAsync(&nats.Msg{Subject: "benchraw.default.jetfleet-bench", Data: body,
			Header: nats.Header{bus.HeaderMsgID: {fmt.Sprintf("raw-%d", i)}}})
	}
	if s.PublishRate, err = timePublishes(ctx, js, o.N, publish); err != nil {
		return s, err
	}
	lat := &latencies{}
	consume := func(n int) (func(), error) {
		cc, err := cons.Consume(func(m jetstream.Msg) {
			lat.observe(m.Data())
			_ = m.Ack()
		})
		return cc.Stop, err
	}
	if s.ProcessRate, err = timeProcessing(ctx, o.N, lat, consume); err != nil {
		return s, err
	}
	s.LatencyP50, s.LatencyP99, s.LatencyCount, err = measureLatency(ctx, o, lat, consume, func(i int) error {
		f, err := publish(o.N + i)
		if err == nil {
			<-f.Ok()
		}
		return err
	})
	return s, err
}

func runJetfleet(ctx context.Context, js jetstream.JetStream, o Options) (Side, error) {
	var s Side
	if err := bus.ProvisionQueues(ctx, js, bus.Config{}, "default"); err != nil {
		return s, err
	}
	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		return s, err
	}
	if s.PublishRate, err = timeDispatchMany(ctx, d, js, o.N); err != nil {
		return s, err
	}
	lat := &latencies{}
	consume := func(n int) (func(), error) {
		w := workers.New(js, workers.Config{Concurrency: o.Concurrency, MaxJobs: n})
		workers.Register(w, func(_ context.Context, j *workers.Job[benchJob]) error {
			lat.add(time.Since(time.Unix(0, j.Args.SentNS)))
			return nil
		})
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { _ = w.Run(wctx); close(done) }()
		return func() { cancel(); <-done }, nil
	}
	if s.ProcessRate, err = timeProcessing(ctx, o.N, lat, consume); err != nil {
		return s, err
	}
	s.LatencyP50, s.LatencyP99, s.LatencyCount, err = measureLatency(ctx, o, lat, consume, func(int) error {
		_, err := d.Dispatch(ctx, benchJob{SentNS: time.Now().UnixNano()})
		return err
	})
	return s, err
}

// timeDispatchMany dispatches n jobs in batches of 1000 and returns jobs/s.
func timeDispatchMany(ctx context.Context, d *bus.Dispatcher, js jetstream.JetStream, n int) (float64, error) {
	began := time.Now()
	for sent := 0; sent < n; {
		batch := make([]bus.DispatchManyParams, min(1000, n-sent))
		now := time.Now().UnixNano()
		for i := range batch {
			batch[i] = bus.DispatchManyParams{Args: benchJob{SentNS: now}}
		}
		if _, err := d.DispatchMany(ctx, batch...); err != nil {
			return 0, err
		}
		sent += len(batch)
	}
	return float64(n) / time.Since(began).Seconds(), nil
}

// timePublishes publishes n messages asynchronously in windows of 1000 and
// returns messages/s once every ack has arrived.
func timePublishes(ctx context.Context, js jetstream.JetStream, n int, publish func(i int) (jetstream.PubAckFuture, error)) (float64, error) {
	began := time.Now()
	for sent := 0; sent < n; {
		futures := make([]jetstream.PubAckFuture, 0, 1000)
		for ; sent < n && len(futures) < 1000; sent++ {
			f, err := publish(sent)
			if err != nil {
				return 0, err
			}
			futures = append(futures, f)
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return 0, err
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
	}
	return float64(n) / time.Since(began).Seconds(), nil
}

// timeProcessing starts a consumer for n ready jobs and returns jobs/s.
func timeProcessing(ctx context.Context, n int, lat *latencies, consume func(n int) (func(), error)) (float64, error) {
	lat.reset()
	began := time.Now()
	stop, err := consume(n)
	if err != nil {
		return 0, err
	}
	defer stop()
	if err := lat.waitFor(ctx, n, 5*time.Minute); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(began).Seconds(), nil
}

// measureLatency offers o.LatencyJobs jobs at o.Rate per second to an idle
// consumer and returns the dispatch→start percentiles.
func measureLatency(ctx context.Context, o Options, lat *latencies, consume func(int) (func(), error), send func(i int) error) (p50, p99 time.Duration, n int, err error) {
	lat.reset()
	stop, err := consume(o.LatencyJobs)
	if err != nil {
		return 0, 0, 0, err
	}
	defer stop()
	time.Sleep(200 * time.Millisecond) // let the consumer go idle
	tick := time.NewTicker(time.Second / time.Duration(o.Rate))
	defer tick.Stop()
	for i := range o.LatencyJobs {
		<-tick.C
		if err := send(i); err != nil {
			return 0, 0, 0, err
		}
	}
	if err := lat.waitFor(ctx, o.LatencyJobs, time.Minute); err != nil {
		return 0, 0, 0, err
	}
	p50, p99 = lat.percentiles()
	return p50, p99, o.LatencyJobs, nil
}

// latencies collects dispatch→start durations.
type latencies struct {
	mu    sync.Mutex
	all   []time.Duration
	count atomic.Int64
}

func (l *latencies) observe(body []byte) {
	var j benchJob
	if json.Unmarshal(body, &j) == nil {
		l.add(time.Since(time.Unix(0, j.SentNS)))
	}
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.all = append(l.all, d)
	l.mu.Unlock()
	l.count.Add(1)
}

func (l *latencies) reset() {
	l.mu.Lock()
	l.all = nil
	l.mu.Unlock()
	l.count.Store(0)
}

func (l *latencies) waitFor(ctx context.Context, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for l.count.Load() < int64(n) {
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d jobs processed within %s", l.count.Load(), n, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}

func (l *latencies) percentiles() (p50, p99 time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := slices.Clone(l.all)
	slices.Sort(s)
	if len(s) == 0 {
		return 0, 0
	}
	return s[len(s)*50/100], s[min(len(s)-1, len(s)*99/100)]
}

// Print writes the report as an aligned table with jetfleet/raw ratios.
func (r Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "no-op jobs: n=%d, concurrency=%d, latency at %d jobs/s offered\t\t\t\t\n", r.Options.N, r.Options.Concurrency, r.Options.Rate)
	fmt.Fprintln(tw, "metric\tjetfleet\traw JetStream\tratio\t")
	row := func(name string, a, b float64, unit string) {
		fmt.Fprintf(tw, "%s\t%.0f %s\t%.0f %s\t%.2f\t\n", name, a, unit, b, unit, a/b)
	}
	row("dispatch (async, acked)", r.Jetfleet.PublishRate, r.Raw.PublishRate, "/s")
	row("processed end to end", r.Jetfleet.ProcessRate, r.Raw.ProcessRate, "/s")
	lat := func(name string, a, b time.Duration) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t\n", name, a.Round(time.Microsecond), b.Round(time.Microsecond), float64(a)/float64(b))
	}
	lat("dispatch→start p50", r.Jetfleet.LatencyP50, r.Raw.LatencyP50)
	lat("dispatch→start p99", r.Jetfleet.LatencyP99, r.Raw.LatencyP99)
	tw.Flush()
}
