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
	"strings"
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
	// Rounds is how many times jetfleet is measured with the job history
	// off and on, alternately (off first, then on first, ...) [3]. The
	// report gives the medians: on a shared machine one pair of runs says
	// little.
	Rounds int
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
	if o.Rounds <= 0 {
		o.Rounds = 3
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
	// LatencyRate is the rate the latency run's jobs were sent at, jobs/s:
	// Options.Rate, or less when the sender could not keep up (a slow
	// dispatch delays the next one).
	LatencyRate float64
	// CPUPerJob is the process's CPU time (user and system, the embedded
	// server's included) per job of the throughput runs.
	CPUPerJob time.Duration
}

// Report is the result of Run.
type Report struct {
	Options Options
	// Jetfleet is jetfleet as configured by default: job history on.
	Jetfleet Side
	// NoHistory is jetfleet with the job history off (bus.Config.NoHistory).
	NoHistory Side
	Raw       Side
	// HistoryRatio is what the job history costs: the median over the
	// rounds of end-to-end throughput (dispatch and processing of the same
	// jobs) with history on over the same with history off.
	HistoryRatio float64
	// HistoryCPURatio is the same by CPU time: the median of CPU per job
	// with history off over CPU per job with history on.
	HistoryCPURatio float64
	// Ratios are the per-round ratios of HistoryRatio.
	Ratios []float64
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
	var on, off []Side
	var cpuRatios []float64
	for i := range opts.Rounds {
		o := opts
		if i > 0 {
			o.LatencyJobs = 0 // latency once: it is not what the rounds are for
		}
		var sides [2]Side // off, on
		for j := range 2 {
			history := j == 1 != (i%2 == 1) // off first in even rounds, on first in odd ones
			side, err := runJetfleet(ctx, js, o, bus.Config{NoHistory: !history})
			if err != nil {
				return r, fmt.Errorf("jetfleet (history %v): %w", history, err)
			}
			sides[b2i(history)] = side
		}
		off, on = append(off, sides[0]), append(on, sides[1])
		r.Ratios = append(r.Ratios, endToEnd(sides[1], o.N)/endToEnd(sides[0], o.N))
		cpuRatios = append(cpuRatios, float64(sides[0].CPUPerJob)/float64(sides[1].CPUPerJob))
	}
	r.NoHistory, r.Jetfleet = medianSide(off), medianSide(on)
	r.HistoryRatio, r.HistoryCPURatio = median(r.Ratios), median(cpuRatios)
	return r, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// endToEnd is the jobs per second of dispatching and then processing n
// jobs, from a side's two rates.
func endToEnd(s Side, n int) float64 {
	return float64(n) / (float64(n)/s.PublishRate + float64(n)/s.ProcessRate)
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// medianSide is the median of each figure of sides; the latency is the
// first round's, the only one that measures it.
func medianSide(sides []Side) Side {
	pick := func(f func(Side) float64) float64 {
		var vs []float64
		for _, s := range sides {
			vs = append(vs, f(s))
		}
		return median(vs)
	}
	out := sides[0]
	out.PublishRate = pick(func(s Side) float64 { return s.PublishRate })
	out.ProcessRate = pick(func(s Side) float64 { return s.ProcessRate })
	out.CPUPerJob = time.Duration(pick(func(s Side) float64 { return float64(s.CPUPerJob) }))
	return out
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
	err = measureLatency(ctx, o, &s, lat, consume, func(i int) error {
		f, err := publish(o.N + i)
		if err == nil {
			<-f.Ok()
		}
		return err
	})
	return s, err
}

func runJetfleet(ctx context.Context, js jetstream.JetStream, o Options, cfg bus.Config) (Side, error) {
	var s Side
	if err := bus.ProvisionQueues(ctx, js, cfg, "default"); err != nil {
		return s, err
	}
	d, err := bus.NewDispatcher(js, cfg)
	if err != nil {
		return s, err
	}
	cpu := processCPU()
	if s.PublishRate, err = timeDispatchMany(ctx, d, js, o.N); err != nil {
		return s, err
	}
	lat := &latencies{}
	consume := func(n int) (func(), error) {
		w := workers.New(js, workers.Config{Concurrency: o.Concurrency, MaxJobs: n, Bus: cfg})
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
	s.CPUPerJob = (processCPU() - cpu) / time.Duration(o.N)
	if o.LatencyJobs == 0 {
		return s, nil
	}
	err = measureLatency(ctx, o, &s, lat, consume, func(int) error {
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
// consumer and records in s the dispatch→start percentiles and the rate
// the jobs were sent at.
func measureLatency(ctx context.Context, o Options, s *Side, lat *latencies, consume func(int) (func(), error), send func(i int) error) error {
	lat.reset()
	stop, err := consume(o.LatencyJobs)
	if err != nil {
		return err
	}
	defer stop()
	time.Sleep(200 * time.Millisecond) // let the consumer go idle
	tick := time.NewTicker(time.Second / time.Duration(o.Rate))
	defer tick.Stop()
	began := time.Now()
	for i := range o.LatencyJobs {
		<-tick.C
		if err := send(i); err != nil {
			return err
		}
	}
	// The first job waits a tick too: n jobs span n ticks.
	s.LatencyRate = float64(o.LatencyJobs) / time.Since(began).Seconds()
	if err := lat.waitFor(ctx, o.LatencyJobs, time.Minute); err != nil {
		return err
	}
	s.LatencyP50, s.LatencyP99 = lat.percentiles()
	s.LatencyCount = o.LatencyJobs
	return nil
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
	fmt.Fprintf(tw, "no-op jobs: n=%d, concurrency=%d, latency at %d jobs/s offered\t\t\t\t\t\t\n", r.Options.N, r.Options.Concurrency, r.Options.Rate)
	fmt.Fprintln(tw, "metric\tjetfleet\thistory off\traw JetStream\tjetfleet/raw\thistory on/off\t")
	row := func(name string, a, off, b float64, unit string) {
		fmt.Fprintf(tw, "%s\t%.0f %s\t%.0f %s\t%.0f %s\t%.2f\t%.2f\t\n", name, a, unit, off, unit, b, unit, a/b, a/off)
	}
	row("dispatch (async, acked)", r.Jetfleet.PublishRate, r.NoHistory.PublishRate, r.Raw.PublishRate, "/s")
	row("processed end to end", r.Jetfleet.ProcessRate, r.NoHistory.ProcessRate, r.Raw.ProcessRate, "/s")
	lat := func(name string, a, off, b time.Duration) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\t%.2f\t\n", name, a.Round(time.Microsecond), off.Round(time.Microsecond), b.Round(time.Microsecond),
			float64(a)/float64(b), float64(a)/float64(off))
	}
	lat("dispatch→start p50", r.Jetfleet.LatencyP50, r.NoHistory.LatencyP50, r.Raw.LatencyP50)
	lat("dispatch→start p99", r.Jetfleet.LatencyP99, r.NoHistory.LatencyP99, r.Raw.LatencyP99)
	row("latency run: sent at", r.Jetfleet.LatencyRate, r.NoHistory.LatencyRate, r.Raw.LatencyRate, "/s")
	tw.Flush()
	ratios := make([]string, len(r.Ratios))
	for i, v := range r.Ratios {
		ratios[i] = fmt.Sprintf("%.2f", v)
	}
	fmt.Fprintf(w, "\njob history's cost (history on / off, %d rounds alternating, medians): dispatch + processing %.2f (rounds: %s); by CPU time per job %.2f (%s on, %s off)\n",
		r.Options.Rounds, r.HistoryRatio, strings.Join(ratios, ", "), r.HistoryCPURatio,
		r.Jetfleet.CPUPerJob.Round(100*time.Nanosecond), r.NoHistory.CPUPerJob.Round(100*time.Nanosecond))
}
