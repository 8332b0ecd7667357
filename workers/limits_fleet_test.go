package workers_test

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// fleetEnv is a NATS server with the queue "default" provisioned and a
// dispatcher, for tests that run helper worker processes.
func fleetEnv(t *testing.T, cfg bus.Config) (url string, d *bus.Dispatcher) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	if err := bus.ProvisionQueues(context.Background(), js, cfg, "default"); err != nil {
		t.Fatal(err)
	}
	d, err := bus.NewDispatcher(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv.ClientURL(), d
}

// TestFleetMaxConcurrent: 3 worker processes of concurrency 8 share
// MaxConcurrent(3). 200 jobs of 100 ms all run once, on their first try,
// and never more than 3 at a time, and at times 3. Then one process
// running a job is killed with SIGKILL: its slots stay taken until their
// lease (3 s here) runs out, never longer, and then the other two run 3
// at a time again (within the lease, plus a second for timers on a
// loaded machine).
func TestFleetMaxConcurrent(t *testing.T) {
	const lease = 3 * time.Second
	url, d := fleetEnv(t, bus.Config{AckWait: 3 * time.Second})
	ps := startWorkers(t, 3, url, "HELPER_LIMIT=cap:3", "HELPER_CONCURRENCY=8", "HELPER_LEASE="+lease.String(), "HELPER_ACK_WAIT=3s")

	jobs := make([]fleetJob, 200)
	for i := range jobs {
		jobs[i] = fleetJob{N: i, MS: 100}
	}
	began := time.Now()
	dispatchFleetJobs(t, d, jobs)
	evs := waitEvents(t, ps, 60*time.Second, "200 jobs end", func(evs []event) bool { return ended(evs) == 200 })
	ss := spans(evs, nil)
	runs := map[int]int{}
	for _, s := range ss {
		runs[s.n]++
		if s.attempt != 1 {
			t.Errorf("job %d ran as attempt %d; waiting for a slot must not use a try", s.n, s.attempt)
		}
	}
	for i := range jobs {
		if runs[i] != 1 {
			t.Errorf("job %d ran %d times, want 1", i, runs[i])
		}
	}
	perProc := map[int]int{}
	for _, s := range ss {
		perProc[s.proc]++
	}
	most := maxOverlap(ss, nil)
	t.Logf("200 jobs of 100ms under MaxConcurrent(3) in %s (ideal %s); max overlap %d; runs per process %v",
		time.Since(began).Round(time.Millisecond), 200*100*time.Millisecond/3, most, perProc)
	if most != 3 {
		t.Fatalf("max overlap %d, want exactly 3", most)
	}

	// Kill a process while it runs a job of 400 ms that started less than
	// 150 ms ago: it surely holds a slot when it dies.
	jobs = make([]fleetJob, 60)
	for i := range jobs {
		jobs[i] = fleetJob{N: 1000 + i, MS: 400}
	}
	dispatchFleetJobs(t, d, jobs)
	var victim *helperProc
	waitEvents(t, ps, 30*time.Second, "a fresh run to kill", func(evs []event) bool {
		now := time.Now()
		for _, s := range spans(evs, nil) {
			if s.n >= 1000 && s.end.IsZero() && now.Sub(s.start) < 150*time.Millisecond {
				victim = ps[s.proc]
				return true
			}
		}
		return false
	})
	if err := victim.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	<-victim.Done
	survivors := func(s span) bool { return s.proc != victim.i }
	var back time.Time
	evs = waitEvents(t, ps, lease+10*time.Second, "the survivors run 3 at a time again", func(evs []event) bool {
		back = firstOverlapAt(spans(evs, map[int]time.Time{victim.i: killedAt}), killedAt, 3, survivors)
		return !back.IsZero()
	})
	ss = spans(evs, map[int]time.Time{victim.i: killedAt})
	held := 0
	for _, s := range ss {
		if s.proc == victim.i && s.n >= 1000 && s.end.Equal(killedAt) {
			held++
		}
	}
	recovery := back.Sub(killedAt)
	t.Logf("killed worker %d running %d job(s); the others ran 3 at a time again %s later (lease %s)", victim.i, held, recovery.Round(time.Millisecond), lease)
	if held < 1 {
		t.Fatalf("the killed worker ran no job when it died")
	}
	// The lease bounds the wait; a second more covers the timer, the
	// compare-and-set and the start on a loaded machine (the test
	// machine's other processes can delay a timer by hundreds of ms).
	if recovery > lease+time.Second {
		t.Errorf("the killed worker's slots came back after %s; the lease is %s", recovery, lease)
	}
	if most := maxOverlap(ss, func(s span) bool { return s.n >= 1000 }); most > 3 {
		t.Errorf("max overlap %d around the kill, want at most 3", most)
	}
	// Its jobs come back after AckWait and every one of them ends.
	waitEvents(t, ps, 60*time.Second, "every job of the second round ends", func(evs []event) bool { return ended(evs) == 260 })
}

// TestFleetMaxConcurrentBy: 10 users' jobs under MaxConcurrentBy(1, user)
// on 3 worker processes: one user's jobs never overlap, and different
// users' jobs run in parallel.
func TestFleetMaxConcurrentBy(t *testing.T) {
	url, d := fleetEnv(t, bus.Config{})
	ps := startWorkers(t, 3, url, "HELPER_LIMIT=by:1", "HELPER_CONCURRENCY=8")
	var jobs []fleetJob
	for i := range 8 {
		for u := range 10 {
			jobs = append(jobs, fleetJob{N: i*10 + u, User: fmt.Sprintf("user:%d", u), MS: 100})
		}
	}
	began := time.Now()
	dispatchFleetJobs(t, d, jobs)
	evs := waitEvents(t, ps, 60*time.Second, "80 jobs end", func(evs []event) bool { return ended(evs) == len(jobs) })
	ss := spans(evs, nil)
	for u := range 10 {
		user := fmt.Sprintf("user:%d", u)
		if most := maxOverlap(ss, func(s span) bool { return s.user == user }); most != 1 {
			t.Errorf("%s ran %d jobs at once, want 1", user, most)
		}
	}
	most := maxOverlap(ss, nil)
	procs := map[int]bool{}
	for _, s := range ss {
		procs[s.proc] = true
		if s.attempt != 1 {
			t.Errorf("job %d ran as attempt %d", s.n, s.attempt)
		}
	}
	t.Logf("80 jobs of 100ms, 10 users × 8, in %s; max overlap %d across users; %d processes ran jobs", time.Since(began).Round(time.Millisecond), most, len(procs))
	if most < 5 {
		t.Errorf("at most %d jobs of different users ran at once, want them in parallel (≥ 5 of 10)", most)
	}
	if len(ss) != len(jobs) {
		t.Errorf("%d runs, want %d", len(ss), len(jobs))
	}
}

// TestFleetRateLimit: RateLimit(10, 1s) on 3 worker processes for 30
// seconds. No window of 900 ms holds more than 10 starts, and the 30
// seconds from the first start hold at least 270 (90% of the limit).
//
// The tolerance: a limit counts the tokens taken, and a handler starts a
// moment after its token (the compare-and-set's answer, then the call:
// well under a millisecond on an idle machine, but on a loaded one the
// goroutine may wait tens of milliseconds for a CPU, and a GC pause adds
// to it). Each token's period has a guard of 1% (10 ms here), so a full
// 1-second window holds more than 10 starts only when a start lags its
// token by more than the guard; windows 100 ms shorter than the period
// absorb lags up to 110 ms. The largest count of a full 1-second window
// is logged.
func TestFleetRateLimit(t *testing.T) {
	url, d := fleetEnv(t, bus.Config{})
	ps := startWorkers(t, 3, url, "HELPER_LIMIT=rate:10:1s", "HELPER_CONCURRENCY=8")
	jobs := make([]fleetJob, 340)
	for i := range jobs {
		jobs[i] = fleetJob{N: i}
	}
	dispatchFleetJobs(t, d, jobs)
	var first time.Time
	evs := waitEvents(t, ps, 60*time.Second, "30 seconds of starts", func(evs []event) bool {
		for _, e := range evs {
			if e.Ev == "start" {
				first = e.at()
				return time.Since(first) > 30*time.Second+200*time.Millisecond
			}
		}
		return false
	})
	var starts []time.Time
	perProc := map[int]int{}
	for _, e := range evs {
		if e.Ev == "start" && e.at().Before(first.Add(30*time.Second)) {
			starts = append(starts, e.at())
			perProc[e.Proc]++
		}
	}
	most, mostFull := 0, 0
	for i, s := range starts {
		n, full := 0, 0
		for _, u := range starts[i:] {
			if u.Sub(s) < 900*time.Millisecond {
				n++
			}
			if u.Sub(s) < time.Second {
				full++
			}
		}
		most, mostFull = max(most, n), max(mostFull, full)
	}
	t.Logf("%d starts in 30s (limit 300; %.1f%%), per process %v; most in a 900ms window %d, in a 1s window %d",
		len(starts), float64(len(starts))/3, perProc, most, mostFull)
	if most > 10 {
		t.Errorf("a 900ms window holds %d starts, want at most 10", most)
	}
	if len(starts) < 270 {
		t.Errorf("%d starts in 30 seconds, want at least 270 (90%% of 10/s)", len(starts))
	}
	if len(perProc) < 2 {
		t.Errorf("only %d process started jobs; the limit must be shared", len(perProc))
	}
}

// TestClusterCapHoldsWhileLimitsLeaderDies: a 3-node cluster with an R3
// limits bucket; 3 worker processes, each connected to another node, share
// MaxConcurrent(3). The node leading the bucket's stream is stopped while
// jobs run: never more than 3 run at once, all of them run, and after the
// election the fleet runs 3 at a time again.
func TestClusterCapHoldsWhileLimitsLeaderDies(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	cfg := bus.Config{Replicas: 3, AckWait: 5 * time.Second}
	ctx := context.Background()
	admin := connectPreferring(t, c, 0)
	if err := bus.ProvisionQueues(ctx, admin, cfg, "default"); err != nil {
		t.Fatal(err)
	}
	// The buckets are made once, as a deployment step would, before the
	// workers start (three processes creating R3 buckets at once on a
	// young cluster can wait past their timeout).
	for _, open := range []func(context.Context, jetstream.JetStream, bus.Config) (jetstream.KeyValue, error){
		bus.OpenLimitsBucket, bus.OpenPauseBucket, bus.OpenWorkersBucket,
	} {
		if _, err := open(ctx, admin, cfg); err != nil {
			t.Fatal(err)
		}
	}
	d, err := bus.NewDispatcher(admin, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ps []*helperProc
	for i := range 3 {
		urls := []string{c.Nodes[i].ClientURL()}
		for j, n := range c.Nodes {
			if j != i {
				urls = append(urls, n.ClientURL())
			}
		}
		ps = append(ps, startHelper(t, i, "worker", "NATS_URL="+strings.Join(urls, ","), "HELPER_LIMIT=cap:3",
			"HELPER_CONCURRENCY=8", "HELPER_REPLICAS=3", "HELPER_ACK_WAIT=5s", "HELPER_TRIES=10"))
	}
	for _, p := range ps {
		p.WaitFor(t, "worker started", 30*time.Second)
	}
	jobs := make([]fleetJob, 150)
	for i := range jobs {
		jobs[i] = fleetJob{N: i, MS: 100}
	}
	dispatchFleetJobs(t, d, jobs)
	waitEvents(t, ps, 30*time.Second, "30 jobs end", func(evs []event) bool { return ended(evs) >= 30 })

	s, err := admin.Stream(ctx, "KV_"+bus.LimitsBucket)
	if err != nil {
		t.Fatal(err)
	}
	leader := s.CachedInfo().Cluster.Leader
	stopped := -1
	for i, n := range c.Nodes {
		if n.Name() == leader {
			stopped = i
		}
	}
	if stopped < 0 {
		t.Fatalf("no node is the leader %q of the limits bucket", leader)
	}
	c.Nodes[stopped].Shutdown()
	stoppedAt := time.Now()
	t.Logf("stopped %s, the limits bucket's leader", leader)

	evs := waitEvents(t, ps, 40*time.Second, "all 150 jobs end", func(evs []event) bool { return ended(evs) == len(jobs) })
	ss := spans(evs, nil)
	most := maxOverlap(ss, nil)
	// The election pauses new starts; the fleet must then run 3 jobs at a
	// time again, with slots taken after the leader stopped.
	again := firstOverlapAt(ss, stoppedAt, 3, func(s span) bool { return s.start.After(stoppedAt) })
	t.Logf("max overlap %d; 3 jobs started after the leader stopped ran at once %s after it; %d runs of %d jobs",
		most, again.Sub(stoppedAt).Round(time.Millisecond), len(ss), len(jobs))
	if most > 3 {
		t.Errorf("max overlap %d, want at most 3 while the bucket's leader is lost", most)
	}
	if again.IsZero() {
		t.Errorf("the fleet never ran 3 at a time after the election")
	}
}
