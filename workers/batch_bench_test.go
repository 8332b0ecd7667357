package workers_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/workers"
)

// benchNoop is the no-op job of BenchmarkBatch.
type benchNoop struct {
	N int `json:"n"`
}

func (benchNoop) Kind() string { return "bench-noop" }

// benchDone is the finally callback of BenchmarkBatch.
type benchDone struct{}

func (benchDone) Kind() string { return "bench-done" }

// BenchmarkBatch is the benchmark: 100,000 no-op jobs as one batch,
// from the call to Batch until its finally callback runs, beside the same
// jobs dispatched with DispatchMany and no batch, until the last one ran,
// on the same embedded server (file storage) and the same worker
// (concurrency 16). The two alternate, one of each per iteration; it
// reports each one's jobs/s and the batch's share of the plain throughput
// (batch-ratio, target ≥ 0.7):
//
//	go test -run '^$' -bench BenchmarkBatch -benchtime 3x ./workers
func BenchmarkBatch(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	srv := natstest.Start(b)
	_, js := natstest.Connect(b, srv.ClientURL())
	if err := bus.ProvisionQueues(ctx, js, bus.Config{}, "bench"); err != nil {
		b.Fatal(err)
	}
	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		b.Fatal(err)
	}
	var ran atomic.Int64
	plainDone := make(chan struct{}, 1)
	batchDone := make(chan struct{}, 1)
	w := workers.New(js, workers.Config{Queues: []string{"bench"}, Concurrency: 16, PresenceInterval: 5 * time.Second})
	workers.Register(w, func(_ context.Context, j *workers.Job[benchNoop]) error {
		if ran.Add(1) == n && j.Header.Get(bus.HeaderBatch) == "" {
			plainDone <- struct{}{}
		}
		return nil
	})
	workers.Register(w, func(context.Context, *workers.Job[benchDone]) error {
		batchDone <- struct{}{}
		return nil
	})
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = w.Run(wctx) }()

	jobs := make([]bus.DispatchManyParams, n)
	for i := range jobs {
		jobs[i] = bus.DispatchManyParams{Args: benchNoop{N: i}, Opts: []bus.Option{bus.OnQueue("bench")}}
	}
	var plain, batch time.Duration
	b.ResetTimer()
	for range b.N {
		ran.Store(0)
		began := time.Now()
		if _, err := d.DispatchMany(ctx, jobs...); err != nil {
			b.Fatal(err)
		}
		<-plainDone
		plain += time.Since(began)

		ran.Store(0)
		began = time.Now()
		if _, err := d.Batch(ctx, jobs, bus.Finally(benchDone{}, bus.OnQueue("bench"))); err != nil {
			b.Fatal(err)
		}
		<-batchDone
		batch += time.Since(began)
	}
	b.StopTimer()
	b.ReportMetric(float64(n*b.N)/plain.Seconds(), "plain-jobs/s")
	b.ReportMetric(float64(n*b.N)/batch.Seconds(), "batch-jobs/s")
	b.ReportMetric(plain.Seconds()/batch.Seconds(), "batch-ratio")
}
