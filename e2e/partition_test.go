//go:build partition

package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/proctest"
	"github.com/jetfleet/jetfleet/sessions"
	"github.com/jetfleet/jetfleet/workers"
)

// ptJob is the partition test's job; its ID says who dispatched it.
type ptJob struct {
	N int `json:"n"`
}

func (ptJob) Kind() string { return "partition" }

// ptRun is one run of a job by a worker.
type ptRun struct {
	id   string
	node int
}

// TestPartitions runs three `jetfleet nats` nodes behind fault-injecting
// proxies (partition_topology_test.go) with, on every node, a job
// dispatcher, a worker and a web node whose sessions live in the R3
// bucket, and three "browsers" (cookie jars) whose tabs use all three web
// nodes. It injects, one after the other: the sessions stream's leader
// isolated from the other two nodes; a follower isolated (a symmetric
// split); a flapping link; slow and lossy routes; a cut client link; then
// heals. Every operation is recorded with its invoke and return times and
// checked:
//
//   - every acknowledged job ran, or sits in the dead letters, after the
//     heal; jobs that ran more than once are counted, and no job ran that
//     nobody dispatched;
//   - per session: read-your-writes and monotonic reads per client (a tab,
//     pinned to its node), and no value read that nobody wrote: any
//     violation fails the test with the history printed. Linearizability
//     across a browser's tabs is checked with porcupine (a register per
//     session key) and stale reads across tabs are counted; both are
//     figures, not promises (docs/partitions.md), unless
//     JETFLEET_PARTITION_STRICT=1 makes porcupine's verdict fail the test;
//   - no load judged a session removed by the bucket's byte bound (the run
//     never comes near it).
//
// Run it alone (build tag partition):
//
//	go test -tags partition -run TestPartitions -count=1 -v -timeout 10m ./e2e
func TestPartitions(t *testing.T) {
	bin := buildJetfleet(t)
	tp := startTopology(t, bin)
	admin := tp.admin(t)
	ctx := context.Background()
	busCfg := bus.Config{Replicas: 3}
	// The run writes a few kilobytes to a bucket bounded at 256 MiB: no
	// session may be judged removed by that bound.
	var evicted atomic.Int64
	smCfg := sessions.Config{Replicas: 3, StoreTimeout: 5 * time.Second, Observe: func(ev sessions.Event) {
		if ev == sessions.EventEvicted {
			evicted.Add(1)
		}
	}}
	// A fresh cluster can have a meta leader and still time out its first
	// stream creations; both are idempotent.
	proctest.Eventually(t, 60*time.Second, "provision JOBS and the sessions bucket", func() error {
		if err := bus.ProvisionQueues(ctx, admin, busCfg, "default"); err != nil {
			return err
		}
		_, err := sessions.New(admin, smCfg)
		return err
	})
	waitWhole(t, admin, "JOBS", "KV_sessions")

	h := newHistory()
	stop, stopClients := context.WithCancel(ctx)
	work, stopWorkers := context.WithCancel(ctx)
	var clients, workersDone sync.WaitGroup
	defer func() { stopClients(); stopWorkers(); clients.Wait(); workersDone.Wait() }()
	var runsMu sync.Mutex
	var runs []ptRun
	webs := make([]string, len(tp.nodes))
	// The workers' warnings (a job delivered again, a settle that failed)
	// go to a file, quoted for the jobs a failed run lost.
	workerLog, err := os.CreateTemp("", "jetfleet-partition-workers-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		workerLog.Close()
		if !t.Failed() {
			os.Remove(workerLog.Name())
		}
	}()
	t.Logf("workers' warnings: %s", workerLog.Name())
	for i := range tp.nodes {
		_, js := tp.connect(t, i, fmt.Sprintf("web%d", i+1))
		var sm *sessions.Manager
		proctest.Eventually(t, 30*time.Second, "open the sessions bucket", func() (err error) {
			sm, err = sessions.New(js, smCfg)
			return err
		})
		srv := httptest.NewServer(sm.Middleware(sessionHandler()))
		t.Cleanup(srv.Close)
		webs[i] = srv.URL

		_, js = tp.connect(t, i, fmt.Sprintf("worker%d", i+1))
		w := workers.New(js, workers.Config{Queues: []string{"default"}, Concurrency: 4, Bus: busCfg,
			Logger: zerolog.New(workerLog).Level(zerolog.WarnLevel).With().Timestamp().Str("worker", fmt.Sprintf("worker%d", i+1)).Logger()})
		node := i
		workers.Register(w, func(ctx context.Context, job *workers.Job[ptJob]) error {
			h.complete(h.invoke(200+node, node, opRun, job.ID, int64(job.Attempt)), nil)
			runsMu.Lock()
			runs = append(runs, ptRun{job.ID, node})
			runsMu.Unlock()
			return nil
		})
		workersDone.Add(1)
		go func() { defer workersDone.Done(); w.Run(work) }()

		_, js = tp.connect(t, i, fmt.Sprintf("dispatcher%d", i+1))
		d, err := bus.NewDispatcher(js, busCfg)
		if err != nil {
			t.Fatal(err)
		}
		clients.Add(1)
		go func() { defer clients.Done(); dispatchLoop(stop, h, d, 100+node, node) }()
	}
	const browsers = 3
	for b := range browsers {
		jar, _ := cookiejar.New(nil)
		client := &http.Client{Jar: jar, Timeout: 20 * time.Second}
		key := fmt.Sprintf("s%d", b)
		// The browser's first tab creates its session, so its tabs share
		// one cookie from the start.
		creator := browsers*len(tp.nodes) + b // a client of its own in the history
		proctest.Eventually(t, 30*time.Second, "create session "+key, func() error {
			op := h.invoke(creator, 0, opWrite, key, int64(b+1))
			_, err := sessionRequest(ctx, client, webs[0]+"/w?v="+strconv.Itoa(b+1))
			h.complete(op, err)
			return err
		})
		for i := range tp.nodes {
			c := b*len(tp.nodes) + i
			clients.Add(1)
			go func() { defer clients.Done(); sessionLoop(stop, h, client, webs[i], c, i, key) }()
		}
	}

	time.Sleep(5 * time.Second)
	f := injectFaults(t, tp, admin, h)
	time.Sleep(5 * time.Second)
	stopClients()
	clients.Wait()

	ops := h.snapshot()
	inspector, err := bus.NewInspector(admin, busCfg)
	if err != nil {
		t.Fatal(err)
	}
	pt := newPtT(t)
	defer pt.failures()
	ran := waitForJobs(pt, admin, inspector, ops, func() []ptRun {
		runsMu.Lock()
		defer runsMu.Unlock()
		return append([]ptRun(nil), runs...)
	}, workerLog.Name())
	stopWorkers()
	workersDone.Wait()
	checkJobs(pt, ops, ran)
	checkSessions(pt, ops, browsers, f.isolated, f.isolatedAt, f.isolatedUntil)
	if n := evicted.Load(); n != 0 {
		pt.Errorf("sessions: %d loads judged a session removed by the bucket's byte bound, which the run never came near", n)
	}
	for _, kind := range []string{opDispatch, opWrite} {
		what := map[string]string{opDispatch: "dispatch", opWrite: "session request"}[kind]
		gaps := longestGaps(ops, len(tp.nodes), kind, f.from, f.until)
		var parts []string
		for i, g := range gaps {
			parts = append(parts, fmt.Sprintf("%s %.1fs", tp.nodes[i].name, g.Seconds()))
		}
		t.Logf("unavailability: longest time without a successful %s, per side: %s", what, strings.Join(parts, ", "))
	}
}

// faultTimes is when the faults of injectFaults ran, as history times.
type faultTimes struct {
	from, until               time.Duration // the first fault, the last heal
	isolated                  int           // the sessions leader that was cut off
	isolatedAt, isolatedUntil time.Duration
}

// injectFaults runs the faults one after the other, each followed by a
// heal and a wait until JOBS and KV_sessions are whole again: the sessions
// leader cut off, a follower cut off (a symmetric split), a flapping link,
// slow and lossy routes, a cut client link.
func injectFaults(t *testing.T, tp *ptTopology, admin jetstream.JetStream, h *ptHistory) faultTimes {
	t.Helper()
	ctx := context.Background()
	leaderOf := func(stream string) int {
		name, _, err := streamLeader(ctx, admin, stream)
		if err != nil || tp.index(name) < 0 {
			t.Fatalf("leader of %s: %q, %v", stream, name, err)
		}
		return tp.index(name)
	}
	phase := func(name string, d time.Duration) {
		h.setPhase(name)
		t.Logf("fault: %s at %.1fs", name, h.now().Seconds())
		time.Sleep(d)
	}
	heal := func() {
		h.setPhase("healing")
		tp.healAll()
		took := waitWhole(t, admin, "JOBS", "KV_sessions")
		t.Logf("fault: healed at %.1fs, streams whole again after %.1fs", h.now().Seconds(), took.Seconds())
		h.setPhase("healed")
		time.Sleep(3 * time.Second)
	}

	var f faultTimes
	f.from = h.now()
	leader := leaderOf("KV_sessions")
	jobsLeader := leaderOf("JOBS")
	f.isolated, f.isolatedAt = leader, h.now()
	tp.isolate(leader)
	phase(fmt.Sprintf("isolated-%s", tp.nodes[leader].name), 30*time.Second)
	f.isolatedUntil = h.now()
	t.Logf("fault: the sessions leader %s isolated (JOBS leader: %s)", tp.nodes[leader].name, tp.nodes[jobsLeader].name)
	heal()

	sessionsLeader := leaderOf("KV_sessions")
	follower := (sessionsLeader + 1) % len(tp.nodes)
	if follower == leaderOf("JOBS") {
		follower = (follower + 1) % len(tp.nodes)
	}
	tp.isolate(follower)
	phase(fmt.Sprintf("split-%s", tp.nodes[follower].name), 15*time.Second)
	heal()

	a := leaderOf("KV_sessions")
	b := (a + 1) % len(tp.nodes)
	h.setPhase(fmt.Sprintf("flap-%s-%s", tp.nodes[a].name, tp.nodes[b].name))
	t.Logf("fault: link %s-%s flapping at %.1fs", tp.nodes[a].name, tp.nodes[b].name, h.now().Seconds())
	for k := range 12 {
		for _, p := range tp.link(a, b) {
			if k%2 == 0 {
				p.Cut()
			} else {
				p.Heal()
			}
		}
		time.Sleep(time.Second)
	}
	heal()

	for _, p := range tp.routes {
		p.Slow(50 * time.Millisecond)
		p.Lossy(0.02)
	}
	tp.nodes[2].proxy.Slow(100 * time.Millisecond)
	phase("slow-lossy", 15*time.Second)
	heal()

	tp.nodes[2].proxy.Cut()
	phase("client-cut-n3", 8*time.Second)
	heal()
	f.until = h.now()
	return f

}

// sessionHandler writes the session key k (/w?v=N) or reads it (/r,
// "none" when absent).
func sessionHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/w", func(w http.ResponseWriter, r *http.Request) {
		v, err := strconv.ParseInt(r.URL.Query().Get("v"), 10, 64)
		if err == nil {
			err = sessions.Put(r.Context(), "k", v)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/r", func(w http.ResponseWriter, r *http.Request) {
		v, ok := sessions.GetInt64(r.Context(), "k")
		if !ok {
			io.WriteString(w, "none")
			return
		}
		fmt.Fprint(w, v)
	})
	return mux
}

// sessionRequest GETs url and returns the body of a 200.
func sessionRequest(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return string(b), nil
}

// sessionLoop is one tab: it writes unique values to its session's key
// and reads it back, in turn, until stop. Requests are not cancelled by
// stop: a request in flight completes and is recorded.
func sessionLoop(stop context.Context, h *ptHistory, c *http.Client, base string, client, node int, key string) {
	seq := int64(0)
	for stop.Err() == nil {
		seq++
		if seq%2 == 1 {
			v := int64(client+1)*1_000_000 + seq
			op := h.invoke(client, node, opWrite, key, v)
			_, err := sessionRequest(context.Background(), c, base+"/w?v="+strconv.FormatInt(v, 10))
			h.complete(op, err)
		} else {
			op := h.invoke(client, node, opRead, key, 0)
			body, err := sessionRequest(context.Background(), c, base+"/r")
			if err == nil && body != "none" {
				op.Value, err = strconv.ParseInt(body, 10, 64)
			}
			h.complete(op, err)
		}
		time.Sleep(40 * time.Millisecond)
	}
}

// dispatchLoop dispatches jobs with unique IDs until stop.
func dispatchLoop(stop context.Context, h *ptHistory, d *bus.Dispatcher, client, node int) {
	for n := 1; stop.Err() == nil; n++ {
		id := fmt.Sprintf("n%d-%05d", node+1, n)
		op := h.invoke(client, node, opDispatch, id, int64(n))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := d.Dispatch(ctx, ptJob{N: n}, bus.JobID(id))
		cancel()
		h.complete(op, err)
		time.Sleep(30 * time.Millisecond)
	}
}
