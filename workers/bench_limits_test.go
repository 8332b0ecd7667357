package workers_test

import (
	"context"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/workers"
)

type benchFree struct{}

func (benchFree) Kind() string { return "bench-free" }

type benchCapped struct{}

func (benchCapped) Kind() string { return "bench-capped" }

// BenchmarkMaxConcurrentOverhead measures, in one run, on one server and
// one worker (concurrency 16), the throughput of no-op jobs of a kind
// without limits and of a kind under MaxConcurrent(100000), a cap far
// above the load, and reports both and their ratio (target ≥ 0.7). Each
// side drains 20,000 jobs stored while the queue was paused; the order of
// the sides alternates from one iteration to the next. ratio is by wall
// time; ratio-cpu by the process's CPU time (worker and embedded server),
// which other load on the machine disturbs least.
//
//	go test -run '^$' -bench MaxConcurrentOverhead -benchtime 3x ./workers
func BenchmarkMaxConcurrentOverhead(b *testing.B) {
	const n = 20_000
	ctx := context.Background()
	srv := natstest.Start(b)
	_, js := natstest.Connect(b, srv.ClientURL())
	cfg := bus.Config{DefaultQueue: "bench"}
	if err := bus.ProvisionQueues(ctx, js, cfg, "bench"); err != nil {
		b.Fatal(err)
	}
	in, _ := bus.NewInspector(js, cfg)
	d, _ := bus.NewDispatcher(js, cfg)
	var done atomic.Int64
	w := workers.New(js, workers.Config{Queues: []string{"bench"}, Concurrency: 16})
	workers.Register(w, func(context.Context, *workers.Job[benchFree]) error { done.Add(1); return nil })
	workers.Register(w, func(context.Context, *workers.Job[benchCapped]) error { done.Add(1); return nil },
		workers.MaxConcurrent(100_000))
	stop := start(b, w)
	defer stop()

	// drain runs n jobs of args and returns the wall time and the process's
	// CPU time (the worker and the embedded server both live in it).
	drain := func(args bus.Args) (wall, cpu time.Duration) {
		if err := in.Pause(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // the worker sees the pause
		jobs := make([]bus.DispatchManyParams, n)
		for i := range jobs {
			jobs[i] = bus.DispatchManyParams{Args: args}
		}
		if _, err := d.DispatchMany(ctx, jobs...); err != nil {
			b.Fatal(err)
		}
		base := done.Load()
		began, cpuBefore := time.Now(), processCPU(b)
		if err := in.Resume(ctx, "bench"); err != nil {
			b.Fatal(err)
		}
		for done.Load()-base < n {
			if time.Since(began) > 2*time.Minute {
				b.Fatalf("%d of %d jobs ran in 2 minutes", done.Load()-base, n)
			}
			time.Sleep(time.Millisecond)
		}
		return time.Since(began), processCPU(b) - cpuBefore
	}
	var free, capped, freeCPU, cappedCPU time.Duration
	add := func(wall, cpu *time.Duration, args bus.Args) {
		w, c := drain(args)
		*wall += w
		*cpu += c
	}
	b.ResetTimer()
	for i := range b.N {
		if i%2 == 0 {
			add(&free, &freeCPU, benchFree{})
			add(&capped, &cappedCPU, benchCapped{})
		} else {
			add(&capped, &cappedCPU, benchCapped{})
			add(&free, &freeCPU, benchFree{})
		}
	}
	freeRate := float64(n*b.N) / free.Seconds()
	cappedRate := float64(n*b.N) / capped.Seconds()
	b.ReportMetric(freeRate, "uncapped-jobs/s")
	b.ReportMetric(cappedRate, "capped-jobs/s")
	b.ReportMetric(cappedRate/freeRate, "ratio")
	// By CPU time, the figure least disturbed by other load on the machine.
	b.ReportMetric(freeCPU.Seconds()/cappedCPU.Seconds(), "ratio-cpu")
}

// processCPU is the user plus system CPU time of this process so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
