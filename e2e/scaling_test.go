//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/examples/catalog/catalog"
	"github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
)

// haproxyCmd sends one command to HAProxy's runtime API.
func (c *cluster) haproxyCmd(t *testing.T, cmd string) {
	conn, err := net.DialTimeout("unix", c.vars["JETFLEET_LB_SOCKET"], 5*time.Second)
	if err != nil {
		t.Fatalf("HAProxy socket: %v", err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "%s\n", cmd)
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _ := conn.Read(buf)
	if out := strings.TrimSpace(string(buf[:n])); out != "" {
		t.Logf("haproxy %q: %s", cmd, out)
	}
}

// TestScalingFigures reports, on one cluster, jobs/s with 1, 2 and 4 worker
// processes and requests/s through HAProxy with 1 and 3 web nodes. It
// asserts nothing about speed. Run it alone:
//
//	go test -tags e2e -run TestScalingFigures -v -timeout 15m ./e2e
//
// On a 2-core machine the curves are flat: the load generator, HAProxy,
// three NATS servers (every job and session write is replicated 3 times),
// two MariaDB servers, the web nodes and the workers all share the same two
// cores, so more processes add CPU contention, not capacity. Thumbnailing
// is CPU work too. The figures mean something on machines with cores to
// spare per process.
func TestScalingFigures(t *testing.T) {
	c := startCluster(t, 4)
	_, js := c.jetstream(t)
	in, err := bus.NewInspector(js, bus.Config{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Requests/s through the balancer: 1 web node, then 3.
	const users, loadFor = 30, 15 * time.Second
	reqs := map[int]float64{}
	for _, nodes := range []int{1, 3} {
		if nodes == 1 {
			c.haproxyCmd(t, "disable server jetfleet_web/web2")
			c.haproxyCmd(t, "disable server jetfleet_web/web3")
		} else {
			c.haproxyCmd(t, "enable server jetfleet_web/web2")
			c.haproxyCmd(t, "enable server jetfleet_web/web3")
			if !waitFor(15*time.Second, func() bool { return c.serversUp() == 3 }) {
				t.Fatal("web2 and web3 not UP again")
			}
		}
		rec := &recorder{}
		start := time.Now()
		runLoad(c.lb, users, loadFor, rec, 0)
		el := time.Since(start)
		reqs[nodes] = float64(rec.total) / el.Seconds()
		t.Logf("web nodes %d: %d requests in %s = %.1f requests/s, %d failed, p50 %s p99 %s", nodes, rec.total,
			el.Round(time.Millisecond), reqs[nodes], rec.failed, rec.percentile(0.5).Round(time.Microsecond), rec.percentile(0.99).Round(time.Microsecond))
	}

	// Jobs/s: with the image queue paused, upload jobsPerRun images (one job
	// each), then resume and time until JOBS has none ready or in flight.
	const jobsPerRun = 400
	png := catalogtest.PNG(48, 32)
	// One user per uploading goroutine: a session takes one request at a
	// time (concurrent saves of one session conflict).
	const uploaders = 8
	var vus []*vu
	for i := range uploaders {
		v := newVU(c.lb, fmt.Sprintf("scaler-%d", i), &recorder{})
		code, b := v.do("POST", "login", []byte(fmt.Sprintf(`{"name":"scaler-%d"}`, i)), "application/json")
		var login struct {
			CSRF string `json:"csrf_token"`
		}
		if code != 200 || json.Unmarshal(b, &login) != nil {
			t.Fatalf("login: %d %s", code, b)
		}
		v.csrf = login.CSRF
		vus = append(vus, v)
	}
	running := 4
	for _, workers := range []int{1, 2, 4} {
		for n := running; n > workers; n-- {
			c.mustScript("kill", fmt.Sprintf("worker%d", n), "TERM")
			waitFor(30*time.Second, func() bool { return !c.running(fmt.Sprintf("worker%d", n)) })
		}
		for n := running + 1; n <= workers; n++ {
			c.mustScript("restart", fmt.Sprintf("worker%d", n))
		}
		running = workers
		if !waitFor(30*time.Second, func() bool {
			st, err := in.Stats(ctx)
			if err != nil {
				return false
			}
			for _, q := range st.Queues {
				if q.Queue == catalog.ImagesQueue {
					return q.Workers == workers
				}
			}
			return false
		}) {
			t.Logf("note: the worker registry did not show exactly %d workers", workers)
		}
		if err := in.Pause(ctx, catalog.ImagesQueue); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		var wg sync.WaitGroup
		var accepted atomic.Int64
		for _, v := range vus {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range jobsPerRun / uploaders {
					code, b := v.do("POST", "items", []byte(fmt.Sprintf(`{"name":"s%d-%d"}`, workers, i)), "application/json")
					var it itemJSON
					if code != 201 || json.Unmarshal(b, &it) != nil {
						t.Logf("create: %d %.100s", code, b)
						continue
					}
					body, ctype := catalogtest.UploadBody(catalogtest.File{Name: "p.png", Data: png})
					if code, b := v.do("POST", fmt.Sprintf("items/%d/images", it.ID), body.Bytes(), ctype); code != 202 {
						t.Logf("upload: %d %.100s", code, b)
						continue
					}
					accepted.Add(1)
				}
			}()
		}
		wg.Wait()
		start := time.Now()
		if err := in.Resume(ctx, catalog.ImagesQueue); err != nil {
			t.Fatal(err)
		}
		done := waitFor(3*time.Minute, func() bool {
			st, err := in.Stats(ctx)
			if err != nil {
				return false
			}
			for _, q := range st.Queues {
				if q.Ready != 0 || q.InFlight != 0 {
					return false
				}
			}
			return true
		})
		el := time.Since(start)
		n := accepted.Load()
		t.Logf("workers %d: %d image jobs in %s = %.1f jobs/s (drained: %v)", workers, n, el.Round(time.Millisecond),
			float64(n)/el.Seconds(), done)
	}
}
