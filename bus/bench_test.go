package bus_test

import (
	"context"
	"encoding/json"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/bus/internal/wire"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// The benchmarks put each bus call beside a raw nats.go JetStream publish of
// the same bytes and headers (a Nats-Msg-Id of the same length) to the same
// stream of the same server, in the same run; the Paired sub-benchmarks run
// the two alternately and report the bus call's share of raw throughput as
// %raw (by wall time) and %raw-cpu (by the process's CPU time):
//
//	go test -run '^$' -bench . -benchtime 2s -count 3 ./bus
//
// The server is embedded in the benchmark process with file storage, as
// `jetfleet up` runs it; JOBS is purged before each sub-benchmark. Targets:
// DispatchMany ≥ 80% of raw async throughput; Dispatch within 10% of raw
// sync publish time (≥ 90.9% of its throughput). Tests never assert on these.

type benchJob struct {
	ItemID int64    `json:"item_id"`
	Paths  []string `json:"paths"`
}

func (benchJob) Kind() string { return "process-item-images" }

// benchBatch is the number of jobs in one DispatchMany call (and one batch of
// raw async publishes).
const benchBatch = 1000

func benchSetup(b *testing.B) (jetstream.JetStream, *bus.Dispatcher, benchJob, []byte) {
	b.Helper()
	srv := natstest.Start(b)
	_, js := natstest.Connect(b, srv.ClientURL())
	if err := bus.Provision(context.Background(), js, bus.Config{}); err != nil {
		b.Fatal(err)
	}
	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		b.Fatal(err)
	}
	args := benchJob{ItemID: 42, Paths: []string{"items/42/original.jpg", "items/42/side.jpg"}}
	body, err := json.Marshal(args)
	if err != nil {
		b.Fatal(err)
	}
	return js, d, args, body
}

// rawMsg is what Dispatch sends for args on the default queue: the same
// subject, body and job-ID header.
func rawMsg(body []byte) *nats.Msg {
	return &nats.Msg{
		Subject: wire.JobSubject("default", benchJob{}.Kind()),
		Header:  nats.Header{bus.HeaderMsgID: []string{nuid.Next()}},
		Data:    body,
	}
}

func purge(b *testing.B, js jetstream.JetStream) {
	b.Helper()
	s, err := js.Stream(context.Background(), bus.JobsStream)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Purge(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// nsPerJob is the measured time per job of a finished b.Loop benchmark.
func nsPerJob(b *testing.B, jobsPerOp int) float64 {
	return float64(b.Elapsed().Nanoseconds()) / float64(b.N*jobsPerOp)
}

// paired times the raw publish and the bus call alternately, one of each per
// operation (the first of the two alternating), and reports for each its
// wall time and the CPU time of the whole process (client and embedded
// server) per job, and the bus call's share of raw throughput: %raw by wall
// time, %raw-cpu by CPU time. Interleaving keeps the ratios honest when
// other load on the machine comes and goes during the run; the CPU-time
// ratio is the one least disturbed by such load, and on an idle machine,
// where publishing is CPU-bound, it predicts the throughput ratio.
func paired(b *testing.B, jobsPerOp int, raw, viaBus func()) {
	var rawWall, busWall, rawCPU, busCPU time.Duration
	first := true
	for b.Loop() {
		if first {
			measure(raw, &rawWall, &rawCPU)
			measure(viaBus, &busWall, &busCPU)
		} else {
			measure(viaBus, &busWall, &busCPU)
			measure(raw, &rawWall, &rawCPU)
		}
		first = !first
	}
	jobs := float64(b.N * jobsPerOp)
	perJob := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / jobs }
	b.ReportMetric(perJob(rawWall), "raw-ns/job")
	b.ReportMetric(perJob(busWall), "bus-ns/job")
	b.ReportMetric(100*float64(rawWall)/float64(busWall), "%raw")
	b.ReportMetric(perJob(rawCPU), "raw-cpu-ns/job")
	b.ReportMetric(perJob(busCPU), "bus-cpu-ns/job")
	b.ReportMetric(100*float64(rawCPU)/float64(busCPU), "%raw-cpu")
}

// measure runs f and adds its wall time and the process's CPU time to wall
// and cpu.
func measure(f func(), wall, cpu *time.Duration) {
	c0, t0 := processCPU(), time.Now()
	f()
	*wall += time.Since(t0)
	*cpu += processCPU() - c0
}

// processCPU is the user and system CPU time the process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSync compares Dispatch with js.PublishMsg: one job per operation,
// each waiting for its PubAck. Paired runs both alternately and reports the
// ratio.
func BenchmarkSync(b *testing.B) {
	ctx := context.Background()
	js, d, args, body := benchSetup(b)
	raw := func(b *testing.B) {
		if _, err := js.PublishMsg(ctx, rawMsg(body)); err != nil {
			b.Fatal(err)
		}
	}
	viaBus := func(b *testing.B) {
		if _, err := d.Dispatch(ctx, args); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("RawPublish", func(b *testing.B) {
		purge(b, js)
		for b.Loop() {
			raw(b)
		}
	})
	b.Run("Dispatch", func(b *testing.B) {
		purge(b, js)
		for b.Loop() {
			viaBus(b)
		}
	})
	b.Run("Paired", func(b *testing.B) {
		purge(b, js)
		paired(b, 1, func() { raw(b) }, func() { viaBus(b) })
	})
}

// publishAll publishes len(futures) messages made by next without
// waiting, then awaits every acknowledgement.
func publishAll(b *testing.B, js jetstream.JetStream, futures []jetstream.PubAckFuture, next func() *nats.Msg) {
	for i := range futures {
		f, err := js.PublishMsgAsync(next())
		if err != nil {
			b.Fatal(err)
		}
		futures[i] = f
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.Fatal(err)
		}
	}
}

// BenchmarkAsync compares DispatchMany with js.PublishMsgAsync: one
// operation is a batch of benchBatch jobs, published without waiting and
// then each acknowledgement awaited. Paired runs both alternately and
// reports the ratio.
func BenchmarkAsync(b *testing.B) {
	ctx := context.Background()
	js, d, args, body := benchSetup(b)
	futures := make([]jetstream.PubAckFuture, benchBatch)
	raw := func(b *testing.B) {
		publishAll(b, js, futures, func() *nats.Msg { return rawMsg(body) })
	}
	jobs := make([]bus.DispatchManyParams, benchBatch)
	for i := range jobs {
		jobs[i] = bus.DispatchManyParams{Args: args}
	}
	viaBus := func(b *testing.B) {
		if _, err := d.DispatchMany(ctx, jobs...); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("RawPublishAsync", func(b *testing.B) {
		purge(b, js)
		for b.Loop() {
			raw(b)
		}
		b.ReportMetric(nsPerJob(b, benchBatch), "ns/job")
	})
	b.Run("DispatchMany", func(b *testing.B) {
		purge(b, js)
		for b.Loop() {
			viaBus(b)
		}
		b.ReportMetric(nsPerJob(b, benchBatch), "ns/job")
	})
	b.Run("Paired", func(b *testing.B) {
		purge(b, js)
		paired(b, benchBatch, func() { raw(b) }, func() { viaBus(b) })
	})
}

// BenchmarkTraceparentOnTheWire measures what a W3C traceparent costs a
// job's message on raw JetStream, with neither jetfleet nor OpenTelemetry
// in the path: one operation publishes benchBatch messages of a job's
// shape (its subject, body and Nats-Msg-Id) without waiting, awaits their
// acknowledgements, and receives and acks them all from a consumer of a
// stream of their own (file storage, work-queue retention, as JOBS).
// Paired runs the batch without the header (reported as raw) and with an
// unsampled 55-byte traceparent (as bus) alternately: %raw is the
// throughput with the header over that without. Most of what tracing at
// sampling 0 costs a job (node's BenchmarkTracingCost, setup offtp) is
// this.
//
//	go test -run '^$' -bench TraceparentOnTheWire -benchtime 100x -count 3 ./bus
func BenchmarkTraceparentOnTheWire(b *testing.B) {
	ctx := context.Background()
	js, _, _, body := benchSetup(b)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "WIRE", Subjects: []string{"wire.>"}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		b.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "WIRE", jetstream.ConsumerConfig{Durable: "wire", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		b.Fatal(err)
	}
	received := make(chan struct{}, benchBatch)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if err := m.Ack(); err != nil {
			b.Error(err)
		}
		received <- struct{}{}
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cc.Stop)
	futures := make([]jetstream.PubAckFuture, benchBatch)
	batch := func(traceparent string) {
		publishAll(b, js, futures, func() *nats.Msg {
			m := &nats.Msg{Subject: "wire.default." + benchJob{}.Kind(), Header: nats.Header{bus.HeaderMsgID: []string{nuid.Next()}}, Data: body}
			if traceparent != "" {
				m.Header[bus.HeaderTraceparent] = []string{traceparent}
			}
			return m
		})
		for range benchBatch {
			<-received
		}
	}
	paired(b, benchBatch, func() { batch("") }, func() { batch("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00") })
}
