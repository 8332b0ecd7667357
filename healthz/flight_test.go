package healthz_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/healthz"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// A storm of 1,000 concurrent probes, all arriving while the checks run,
// causes exactly one run of each check; the next storm, inside the cache
// period, causes none.
func TestProbeStormRunsEachCheckOncePerCachePeriod(t *testing.T) {
	t.Parallel()
	const probes = 1000
	ns := natstest.Start(t)
	nc, js := natstest.Connect(t, ns.ClientURL())
	var natsRuns, streamRuns atomic.Int64
	gate := make(chan struct{})
	gated := func(fn func(context.Context) error) func(context.Context) error {
		return func(ctx context.Context) error {
			<-gate // hold the run until every probe is waiting on it
			return fn(ctx)
		}
	}
	h := healthz.New(healthz.Config{CacheFor: time.Hour},
		healthz.Check{Name: "nats", Critical: true, Timeout: 30 * time.Second, Run: counted(&natsRuns, gated(natsCheck(nc, js)))},
		healthz.Check{Name: "account", Timeout: 30 * time.Second, Run: counted(&streamRuns, gated(func(ctx context.Context) error {
			_, err := js.AccountInfo(ctx)
			return err
		}))},
	)
	base := healthServer(t, h)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: probes}, Timeout: time.Minute}
	defer client.CloseIdleConnections()

	storm := func(held bool) []int {
		codes := make([]int, probes)
		var wg sync.WaitGroup
		for i := range probes {
			wg.Go(func() {
				req, _ := http.NewRequest(http.MethodGet, base+"/up", nil)
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("probe %d: %v", i, err)
					return
				}
				resp.Body.Close()
				codes[i] = resp.StatusCode
			})
		}
		if held {
			waitFor(t, 30*time.Second, "1,000 probes in flight", func() bool { return h.InFlight() == probes })
			close(gate)
		}
		wg.Wait()
		return codes
	}
	codes := storm(true)
	if n, m := natsRuns.Load(), streamRuns.Load(); n != 1 || m != 1 {
		t.Errorf("1,000 concurrent probes ran nats %d and account %d times, want 1 and 1", n, m)
	}
	codes = append(codes, storm(false)...)
	for i, c := range codes {
		if c != 200 {
			t.Fatalf("probe %d = %d, want 200", i, c)
		}
	}
	if n, m := natsRuns.Load(), streamRuns.Load(); n != 1 || m != 1 {
		t.Errorf("after a second storm inside the cache period: %d and %d runs, want still 1 and 1", n, m)
	}
}

// Without caching every sequential probe runs the check: the storm test's
// single run comes from single flight and the cache, not from chance.
func TestEachProbeRunsTheCheckWhenCachingIsOff(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	nc, js := natstest.Connect(t, ns.ClientURL())
	var runs atomic.Int64
	h := healthz.New(healthz.Config{CacheFor: -1}, healthz.Check{Name: "nats", Critical: true, Timeout: checkTimeout, Run: counted(&runs, natsCheck(nc, js))})
	base := healthServer(t, h)
	for range 5 {
		if r := get(t, base+"/up", ""); r.code != 200 {
			t.Fatalf("GET /up = %d", r.code)
		}
	}
	if n := runs.Load(); n != 5 {
		t.Errorf("5 probes with caching off ran the check %d times, want 5", n)
	}
}

// A check that outlives its timeout, whether it honours its context (a NATS
// request nobody answers) or not (a Run stuck on a channel), does not make
// /up slower than the timeout and reports the timeout. The stuck Run is not
// started again until it returns.
func TestSlowCheckIsCutAtItsTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	ns := natstest.Start(t)
	nc, _ := natstest.Connect(t, ns.ClientURL())
	sub, err := nc.SubscribeSync("healthz.silent") // a responder that never replies
	must(t, err)
	defer sub.Unsubscribe()
	var silentRuns, stuckRuns atomic.Int64
	unstick := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-unstick:
		default:
			close(unstick)
		}
	})
	h := healthz.New(healthz.Config{CacheFor: -1},
		healthz.Check{Name: "silent", Timeout: timeout, Run: counted(&silentRuns, func(ctx context.Context) error {
			_, err := nc.RequestWithContext(ctx, "healthz.silent", nil)
			return err
		})},
		healthz.Check{Name: "stuck", Critical: true, Timeout: timeout, Run: counted(&stuckRuns, func(context.Context) error {
			<-unstick
			return nil
		})},
	)
	base := healthServer(t, h)

	began := time.Now()
	code, rep := getReport(t, base+"/up")
	if took := time.Since(began); took > timeout+time.Second {
		t.Errorf("GET /up took %s with checks timing out after %s", took, timeout)
	}
	if code != 503 || rep.Checks["stuck"].Status != "down" || rep.Checks["silent"].Status != "degraded" {
		t.Errorf("GET /up = %d %+v, want 503 with stuck down and silent degraded", code, rep)
	}
	for name, c := range rep.Checks {
		if !strings.HasPrefix(c.Error, "timed out after 300ms: context deadline exceeded") {
			t.Errorf("%s error = %q, want the timeout", name, c.Error)
		}
	}

	code, rep = getReport(t, base+"/up")
	if code != 503 || stuckRuns.Load() != 1 || silentRuns.Load() != 2 {
		t.Errorf("second probe: %d, stuck ran %d times (want 1: still running), silent %d (want 2)", code, stuckRuns.Load(), silentRuns.Load())
	}
	if c := rep.Checks["stuck"]; !strings.HasPrefix(c.Error, "timed out") {
		t.Errorf("stuck check while still running = %+v, want its timeout result", c)
	}

	close(unstick)
	waitFor(t, 5*time.Second, "the stuck check runs again and passes once it returns", func() bool {
		_, rep := getReport(t, base+"/up")
		return rep.Checks["stuck"].Status == "ok"
	})
	if n := stuckRuns.Load(); n != 2 {
		t.Errorf("stuck ran %d times, want 2", n)
	}
}
