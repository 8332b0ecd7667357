package node_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/jaegertest"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/node"
	"github.com/jetfleet/jetfleet/workers"
)

// otlpBackend is where the sampled spans go: the test backend, a real
// Jaeger in a process of its own as a collector would be, when it is built
// (the benchmark does not build it); else an in-process OTLP/HTTP sink,
// whose work then counts in the process's CPU time. cpu is the CPU time
// the backend's own process has used (nil for the sink).
func otlpBackend(b *testing.B) (url string, received func() bool, cpu func() time.Duration) {
	if jaegertest.Built() {
		j := jaegertest.Start(b)
		b.Logf("exporting to Jaeger %s at %s", jaegertest.Version, j.OTLPEndpoint)
		return j.OTLPEndpoint, func() bool {
				services, err := j.Services()
				return err == nil && slices.Contains(services, "bench")
			}, func() time.Duration {
				d, err := j.CPU()
				if err != nil {
					b.Fatal(err)
				}
				return d
			}
	}
	b.Log("exporting to an in-process OTLP sink (Jaeger is not built)")
	url, n := otlpSink(b)
	return url, func() bool { return n.Load() > 0 }, nil
}

// otlpSink is an OTLP/HTTP receiver that reads and drops what it gets.
func otlpSink(b *testing.B) (url string, spans *atomic.Int64) {
	spans = &atomic.Int64{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		spans.Add(n)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	b.Cleanup(srv.Close)
	return srv.URL, spans
}

// benchNode is one node of a setup: a web node serving GET /ping (an
// /up-style handler inside the node's middleware) and a worker on a queue
// of its own, counting the jobs it finishes.
type benchNode struct {
	name  string
	queue string
	url   string
	d     *bus.Dispatcher
	done  atomic.Int64
	ch    chan struct{} // signalled when done reaches want
	want  atomic.Int64
	// ctx is what jobs are dispatched with: offtp's carries an unsampled
	// remote span context, which a dispatch passes on as the job's
	// traceparent with tracing off too.
	ctx context.Context
	// flush exports the spans the node has queued (nothing with
	// tracing off).
	flush func()
}

func startBenchNode(b *testing.B, natsURL, sink, name, sampler string) *benchNode {
	env := map[string]string{"NATS_URL": natsURL}
	if sampler != "" {
		env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink
		env["OTEL_TRACES_SAMPLER"] = sampler
	}
	bn := &benchNode{name: name, queue: "bench-" + name, ch: make(chan struct{}, 1), ctx: context.Background()}
	if name == "offtp" {
		bn.ctx = trace.ContextWithRemoteSpanContext(bn.ctx, trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
			SpanID:  trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		}))
	}
	app := node.App{Name: "bench", Queues: []string{bn.queue}, Routes: func(_ *node.Services, mux *http.ServeMux) {
		mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	}}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.Open(ctx, app, node.Config{Getenv: func(k string) string { return env[k] }, DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	bn.d = n.Services().Dispatcher
	bn.flush = func() {}
	if tp, ok := n.Services().TracerProvider.(interface{ ForceFlush(context.Context) error }); ok {
		bn.flush = func() {
			if err := tp.ForceFlush(ctx); err != nil {
				b.Error(err)
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	bn.url = node.HTTPURL(ln.Addr()) + "ping"
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = n.Serve(ctx, node.ServeConfig{Listener: ln, DrainDelay: -1}) }()
	go func() {
		defer wg.Done()
		_ = n.Work(ctx, node.WorkConfig{Worker: workers.Config{Concurrency: 16, Middleware: []workers.Middleware{bn.count}}})
	}()
	b.Cleanup(func() { cancel(); wg.Wait(); n.Close() })
	return bn
}

// count is a middleware that signals when the expected jobs are done.
func (bn *benchNode) count(next workers.HandlerFunc) workers.HandlerFunc {
	return func(ctx context.Context, j *bus.Job) error {
		err := next(ctx, j)
		if bn.done.Add(1) == bn.want.Load() {
			bn.ch <- struct{}{}
		}
		return err
	}
}

// jobs dispatches n no-op jobs one by one (a dispatch span each), waits
// until the worker has run them and the node has exported their spans,
// and returns the time taken.
func (bn *benchNode) jobs(b *testing.B, n int) time.Duration {
	bn.done.Store(0)
	bn.want.Store(int64(n))
	began := time.Now()
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < n; i += 8 {
				if _, err := bn.d.Dispatch(bn.ctx, workers.Noop{}, bus.OnQueue(bn.queue)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-bn.ch:
	case <-time.After(time.Minute):
		b.Fatalf("%s: %d of %d jobs done after a minute", bn.name, bn.done.Load(), n)
	}
	bn.flush()
	return time.Since(began)
}

// requests sends n GET /ping from 8 keep-alive clients, waits until the
// node has exported their spans, and returns the time taken.
func (bn *benchNode) requests(b *testing.B, client *http.Client, n int) time.Duration {
	began := time.Now()
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := p; i < n; i += 8 {
				resp, err := client.Get(bn.url)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	bn.flush()
	return time.Since(began)
}

// cost is what a batch took: wall time and the process's CPU time (user
// and system: the three nodes, their clients and the embedded NATS server
// all run in this process, and the idle ones cost next to nothing).
type cost struct{ wall, cpu time.Duration }

func (c *cost) add(f func()) {
	cpu0, wall0 := processCPU(), time.Now()
	f()
	c.wall += time.Since(wall0)
	c.cpu += processCPU() - cpu0
}

// processCPU is the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkTracingCost runs four nodes on one NATS server, with tracing
// off, on with sampling 0, on with sampling 1 (exported over OTLP/HTTP)
// and off again but with every job carrying an unsampled traceparent, as a
// traced producer elsewhere would send it (offtp: what the header costs on
// the wire, with no tracing in the node). On each iteration it sends each
// of them in turn (in the balanced order of balancedOrder) 500 jobs,
// dispatched one by one and run by its worker (a dispatch span and an
// attempt span per job), and 1,000 requests of an /up-style route (a
// server span each); sampled spans go to Jaeger when it is built, else to
// an in-process sink, and a sampled node's batch ends with its spans
// exported, so that it pays for its own exports. It reports jobs/s and
// req/s per setup and, as the figures to read, each setup's throughput as
// a ratio of tracing off's, side by side in the same run, by wall time and
// by the process's CPU time (the one least disturbed by other load on the
// machine). Targets: sampled0 ≥ 0.95, sampled1 ≥ 0.80.
//
//	go test -run '^$' -bench TracingCost -benchtime 60x -count 3 ./node
func BenchmarkTracingCost(b *testing.B) {
	// No OTEL_* at all; tracing on with sampling 0 (spans made, none
	// recorded); on with sampling 1 (every span exported to the sink); no
	// OTEL_* but a traceparent on each job.
	setups := []struct{ name, sampler string }{{"off", ""}, {"sampled0", "always_off"}, {"sampled1", "always_on"}, {"offtp", ""}}
	srv := natstest.Start(b)
	sink, exported, backendCPU := otlpBackend(b)
	nodes := make([]*benchNode, len(setups))
	for i, s := range setups {
		nodes[i] = startBenchNode(b, srv.ClientURL(), sink, s.name, s.sampler)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	b.Cleanup(client.CloseIdleConnections)
	for _, bn := range nodes { // warm up: connections, consumers, stacks
		bn.jobs(b, 500)
		bn.requests(b, client, 500)
	}
	const jobs, reqs = 500, 1000
	jobCost := make([]cost, len(nodes))
	reqCost := make([]cost, len(nodes))
	var backend0 time.Duration
	if backendCPU != nil {
		backend0 = backendCPU()
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, j := range balancedOrder(len(nodes), i) {
			jobCost[j].add(func() { nodes[j].jobs(b, jobs) })
			reqCost[j].add(func() { nodes[j].requests(b, client, reqs) })
		}
	}
	b.StopTimer()
	if backendCPU != nil {
		time.Sleep(time.Second) // Jaeger stores a batch within its batch processor's 100 ms
		s1 := slices.IndexFunc(setups, func(s struct{ name, sampler string }) bool { return s.name == "sampled1" })
		reportBackendCost(b, backendCPU()-backend0, jobCost[0], jobCost[s1], reqCost[0], reqCost[s1], jobs, reqs)
	}
	for j, s := range setups {
		b.ReportMetric(float64(jobs*b.N)/jobCost[j].wall.Seconds(), s.name+"-jobs/s")
		b.ReportMetric(float64(reqs*b.N)/reqCost[j].wall.Seconds(), s.name+"-req/s")
		b.ReportMetric(float64(jobCost[j].cpu.Microseconds())/float64(jobs*b.N), s.name+"-cpu-µs/job")
		b.ReportMetric(float64(reqCost[j].cpu.Microseconds())/float64(reqs*b.N), s.name+"-cpu-µs/req")
	}
	for j := 1; j < len(setups); j++ {
		b.ReportMetric(jobCost[0].wall.Seconds()/jobCost[j].wall.Seconds(), setups[j].name+"/off-jobs")
		b.ReportMetric(jobCost[0].cpu.Seconds()/jobCost[j].cpu.Seconds(), setups[j].name+"/off-jobs-cpu")
		b.ReportMetric(reqCost[0].wall.Seconds()/reqCost[j].wall.Seconds(), setups[j].name+"/off-req")
		b.ReportMetric(reqCost[0].cpu.Seconds()/reqCost[j].cpu.Seconds(), setups[j].name+"/off-req-cpu")
	}
	if !exported() {
		b.Error("the sampled1 node exported nothing")
	}
}

// reportBackendCost reports what Jaeger's process spent on the spans of
// the timed batches (only sampled1 exports any: two spans per job, one
// per request) and sampled1's cost with it counted, as on a machine that
// runs its trace backend beside the node.
func reportBackendCost(b *testing.B, spent time.Duration, offJobs, s1Jobs, offReqs, s1Reqs cost, jobs, reqs int) {
	perSpan := float64(spent.Microseconds()) / float64((2*jobs+reqs)*b.N)
	perJob := func(c cost) float64 { return float64(c.cpu.Microseconds()) / float64(jobs*b.N) }
	perReq := func(c cost) float64 { return float64(c.cpu.Microseconds()) / float64(reqs*b.N) }
	b.ReportMetric(perSpan, "backend-cpu-µs/span")
	b.ReportMetric(perJob(offJobs)/(perJob(s1Jobs)+2*perSpan), "sampled1+backend/off-jobs-cpu")
	b.ReportMetric(perReq(offReqs)/(perReq(s1Reqs)+perSpan), "sampled1+backend/off-req-cpu")
}

// balancedOrder is the order of n setups (n even) in round r: the rows of
// a Williams square, so that over n rounds each setup runs right after
// every other one once. What a batch leaves behind (a garbage collection
// it started, its exporter's last requests) costs the batch after it; a
// fixed succession would charge one setup with another's leftovers in
// every round.
func balancedOrder(n, r int) []int {
	order := make([]int, 0, n)
	order = append(order, 0)
	for k := 1; len(order) < n; k++ {
		order = append(order, k)
		if len(order) < n {
			order = append(order, n-k)
		}
	}
	for i := range order {
		order[i] = (order[i] + r) % n
	}
	return order
}

func TestBalancedOrderPutsEverySetupAfterEveryOther(t *testing.T) {
	for _, n := range []int{2, 4, 6} {
		after := map[[2]int]int{}
		for r := range n {
			order := balancedOrder(n, r)
			got := slices.Sorted(slices.Values(order))
			for i, v := range got {
				if v != i {
					t.Fatalf("n=%d round %d: order %v is not a permutation of the setups", n, r, order)
				}
			}
			for i := 1; i < n; i++ {
				after[[2]int{order[i-1], order[i]}]++
			}
		}
		if len(after) != n*(n-1) {
			t.Errorf("n=%d: %d ordered pairs of setups met, want %d", n, len(after), n*(n-1))
		}
		for pair, k := range after {
			if k != 1 {
				t.Errorf("n=%d: setup %d ran right after %d in %d rounds, want 1", n, pair[1], pair[0], k)
			}
		}
	}
}
