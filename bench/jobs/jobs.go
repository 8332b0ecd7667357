// Package jobs measures jetfleet's job path end to end beside its peers on
// one machine: `jetfleet work` on a `jetfleet nats` server, raw JetStream
// (Consume and Ack) on the same server, Asynq on Redis and River on
// PostgreSQL. Every system's worker is a process of its own, so that its
// CPU and memory are its own; the producer is the benchmark process.
package jobs

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// Config is one benchmark run's settings.
type Config struct {
	N           int // jobs per measurement
	Concurrency int // jobs each worker process runs at once
	Workers     int // worker processes per system
	// WorkerCounts, when set, measures each system with each of these
	// numbers of worker processes, interleaved (a scaling curve), instead
	// of Workers.
	WorkerCounts []int
	EnqueueFirst bool          // enqueue all N before the workers start (their start-up is timed)
	Systems      []string      // jetfleet, jetstream, asynq, river
	Runs         int           // interleaved rounds
	Timeout      time.Duration // bound of one measurement
	Self         string        // this binary, re-run as a worker process
	Jetfleet     string        // the jetfleet binary
	// WorkBinary runs the jetfleet workers (`<it> work`): default
	// Jetfleet; a service's own binary on package node works too.
	WorkBinary  string
	NATSURLs    []string // the servers; workers are spread over them
	Replicas    int      // JOBS and the raw stream's replicas
	RedisAddr   string
	PostgresDSN string
	Log         io.Writer // diagnostics
}

// Result is one measurement of one system.
type Result struct {
	System  string
	Enqueue time.Duration // until the backend acknowledged every job
	Total   time.Duration // first enqueue (or worker start) to the last job done
	IdleRSS int64         // bytes, largest of the workers, before the first job
	// IdleAnon is the part of IdleRSS that is the worker's own memory
	// (RssAnon: heap, stacks), not its binary's pages, which the page
	// cache shares with every process running the same binary.
	IdleAnon  int64
	PeakRSS   int64         // bytes, largest high-water mark of the workers
	WorkerCPU time.Duration // user+system CPU of the workers
}

// PerSecond is the end-to-end rate.
func (r Result) PerSecond(n int) float64 { return float64(n) / r.Total.Seconds() }

// system is one peer: it prepares an empty queue, starts its workers and
// enqueues N jobs, and tells when all are done.
type system interface {
	name() string
	reset(ctx context.Context) error
	startWorkers(ctx context.Context) ([]*proc, error)
	enqueue(ctx context.Context, n, c int) error
	done(ctx context.Context) (bool, error)
	close()
}

// Run measures every system cfg.Runs times, interleaved, prints one line
// per measurement and then the medians with their ratio to raw JetStream.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	var systems []system
	defer func() {
		for _, s := range systems {
			s.close()
		}
	}()
	counts := cfg.WorkerCounts
	if len(counts) == 0 {
		counts = []int{cfg.Workers}
	}
	for _, k := range counts {
		for _, name := range cfg.Systems {
			c := cfg
			c.Workers = k
			s, err := newSystem(ctx, name, c)
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if len(cfg.WorkerCounts) > 0 {
				s = scaled{s, k}
			}
			systems = append(systems, s)
		}
	}
	results := map[string][]Result{}
	for r := 1; r <= cfg.Runs; r++ {
		for _, s := range systems {
			res, err := measure(ctx, cfg, s)
			if err != nil { // the others still run
				fmt.Fprintf(out, "%-9s run=%d failed: %v\n", s.name(), r, err)
				continue
			}
			results[s.name()] = append(results[s.name()], res)
			fmt.Fprintln(out, line(cfg, res, "run="+fmt.Sprint(r)))
		}
	}
	fmt.Fprintf(out, "\nmedian runs of %d (n=%d c=%d workers=%d mode=%s):\n", cfg.Runs, cfg.N, cfg.Concurrency, cfg.Workers, mode(cfg))
	for _, s := range systems {
		if len(results[s.name()]) == 0 {
			continue
		}
		m := median(results[s.name()])
		extra := ""
		raw := 0.0
		if rs := results[rawName(s)]; len(rs) > 0 {
			raw = median(rs).PerSecond(cfg.N)
		}
		if raw > 0 {
			extra = fmt.Sprintf("ratio_to_raw_jetstream=%.2f", m.PerSecond(cfg.N)/raw)
		}
		fmt.Fprintln(out, line(cfg, m, extra))
	}
	return nil
}

func mode(cfg Config) string {
	if cfg.EnqueueFirst {
		return "enqueue-first"
	}
	return "e2e"
}

// line is one comparable line: system, rate, times, memory, load.
func line(cfg Config, r Result, extra string) string {
	f := []string{
		fmt.Sprintf("%-9s", r.System),
		fmt.Sprintf("jobs_per_s=%.0f", r.PerSecond(cfg.N)),
		fmt.Sprintf("enqueue_per_s=%.0f", float64(cfg.N)/r.Enqueue.Seconds()),
		fmt.Sprintf("total_s=%.3f", r.Total.Seconds()),
		fmt.Sprintf("worker_cpu_us_per_job=%.1f", float64(r.WorkerCPU.Microseconds())/float64(cfg.N)),
		idle(r.IdleRSS),
		idleAnon(r.IdleAnon),
		fmt.Sprintf("peak_rss_mib=%.1f", float64(r.PeakRSS)/(1<<20)),
		"load=" + loadavg(),
	}
	if extra != "" {
		f = append(f, extra)
	}
	return strings.Join(f, " ")
}

// median is the median run by total time: a whole run, so that its
// figures belong together; of an even number of runs, the slower of the
// two middle ones.
func median(rs []Result) Result {
	s := slices.Clone(rs)
	slices.SortFunc(s, func(a, b Result) int { return int(a.Total - b.Total) })
	return s[len(s)/2]
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// measure runs one system once: workers attached first (then N jobs
// published and the clock runs from the first publish), or the N jobs
// stored first (the clock runs from the workers' start).
func measure(ctx context.Context, cfg Config, s system) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	res := Result{System: s.name()}
	if err := s.reset(ctx); err != nil {
		return res, fmt.Errorf("reset: %w", err)
	}
	var procs []*proc
	defer func() { stopAll(procs) }()
	var start time.Time
	if cfg.EnqueueFirst {
		t := time.Now()
		if err := s.enqueue(ctx, cfg.N, cfg.Concurrency); err != nil {
			return res, err
		}
		res.Enqueue = time.Since(t)
		start = time.Now()
		var err error
		if procs, err = s.startWorkers(ctx); err != nil {
			return res, err
		}
	} else {
		var err error
		if procs, err = s.startWorkers(ctx); err != nil {
			return res, err
		}
		if err := waitReady(ctx, procs); err != nil {
			return res, err
		}
		res.IdleRSS, res.IdleAnon = maxRSS(procs), maxStatus(procs, "RssAnon")
		start = time.Now()
		if err := s.enqueue(ctx, cfg.N, cfg.Concurrency); err != nil {
			return res, err
		}
		res.Enqueue = time.Since(start)
	}
	for {
		ok, err := s.done(ctx)
		if err != nil {
			return res, err
		}
		if ok {
			break
		}
		select {
		case <-ctx.Done():
			return res, fmt.Errorf("not done within %s: %w", cfg.Timeout, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
	res.Total = time.Since(start)
	if cfg.EnqueueFirst {
		res.IdleRSS, res.IdleAnon = -1, -1 // no idle moment: the jobs were waiting
	}
	res.PeakRSS = maxHWM(procs)
	res.WorkerCPU = cpuOf(procs)
	return res, nil
}

func idleAnon(anon int64) string {
	if anon < 0 {
		return "idle_anon_mib=n/a"
	}
	return fmt.Sprintf("idle_anon_mib=%.1f", float64(anon)/(1<<20))
}

func idle(rss int64) string {
	if rss < 0 {
		return "idle_rss_mib=n/a"
	}
	return fmt.Sprintf("idle_rss_mib=%.1f", float64(rss)/(1<<20))
}

// scaled is a system measured with a given number of worker processes.
type scaled struct {
	system
	workers int
}

func (s scaled) name() string { return fmt.Sprintf("%s×%d", s.system.name(), s.workers) }

// rawName is the name of raw JetStream's line measured like s.
func rawName(s system) string {
	if sc, ok := s.(scaled); ok {
		return scaled{rawSystem{}, sc.workers}.name()
	}
	return "jetstream"
}
