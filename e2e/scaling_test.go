//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
// processes and requests/s through HAProxy with 1 and 3 web nodes. Run it
// alone:
//
//	go test -tags e2e -run TestScalingFigures -v -timeout 15m ./e2e
//
// It asserts what holds whatever the speed: with no fault injected, every
// request through the balancer is answered without a 5xx or a transport
// error, every session and read-your-writes check passes, every upload is
// accepted, no image job runs while its queue is paused, and after the
// resume every job is processed (its item's image "ready") with none
// missing, none in DLQ and the queues empty. It never asserts a time or a
// rate: the figures are only logged (speed is a benchmark ratio, never a
// test's pass mark).
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
		res := runLoad(c.lb, users, loadFor, rec, 0)
		el := time.Since(start)
		t.Logf("web nodes %d: %d requests in %s = %.1f requests/s, %d failed, p50 %s p99 %s", nodes, rec.total,
			el.Round(time.Millisecond), float64(rec.total)/el.Seconds(), rec.failed, rec.percentile(0.5).Round(time.Microsecond), rec.percentile(0.99).Round(time.Microsecond))
		if rec.total == 0 || res.items == 0 {
			t.Errorf("web nodes %d: %d requests, %d items created: the load did not run", nodes, rec.total, res.items)
		}
		if rec.failed != 0 {
			t.Errorf("web nodes %d: %d of %d requests failed with no fault injected; last: %q", nodes, rec.failed, rec.total, rec.failures[max(0, len(rec.failures)-5):])
		}
		if len(res.sessLost) > 0 || len(res.ryw) > 0 {
			t.Errorf("web nodes %d: sessions lost %q, read-your-writes violations %q", nodes, res.sessLost[:min(5, len(res.sessLost))], res.ryw[:min(5, len(res.ryw))])
		}
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
			name := fmt.Sprintf("worker%d", n)
			c.mustScript("kill", name, "TERM")
			if !waitFor(30*time.Second, func() bool { return !c.running(name) }) {
				t.Fatalf("%s still running 30s after SIGTERM", name)
			}
		}
		for n := running + 1; n <= workers; n++ {
			c.mustScript("restart", fmt.Sprintf("worker%d", n))
		}
		running = workers
		// A worker stopped cleanly deletes its record; a started one writes
		// its own at once.
		if !waitFor(30*time.Second, func() bool { return imagesQueue(ctx, in).Workers == workers }) {
			t.Fatalf("the worker registry shows %d workers on queue %s, want %d", imagesQueue(ctx, in).Workers, catalog.ImagesQueue, workers)
		}
		// Pause, and wait until each running worker has logged that it saw
		// the pause: from then on none takes an image job.
		before := make([]int, workers+1)
		for n := 1; n <= workers; n++ {
			before[n] = c.pausesSeen(fmt.Sprintf("worker%d", n))
		}
		if err := in.Pause(ctx, catalog.ImagesQueue); err != nil {
			t.Fatal(err)
		}
		for n := 1; n <= workers; n++ {
			name := fmt.Sprintf("worker%d", n)
			if !waitFor(30*time.Second, func() bool { return c.pausesSeen(name) > before[n] }) {
				t.Fatalf("%s did not log the pause of queue %s", name, catalog.ImagesQueue)
			}
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var uploads []upload
		for _, v := range vus {
			wg.Go(func() {
				for i := range jobsPerRun / uploaders {
					code, b := v.do("POST", "items", []byte(fmt.Sprintf(`{"name":"s%d-%d"}`, workers, i)), "application/json")
					var it itemJSON
					if code != 201 || json.Unmarshal(b, &it) != nil {
						t.Errorf("create: %d %.100s", code, b)
						continue
					}
					body, ctype := catalogtest.UploadBody(catalogtest.File{Name: "p.png", Data: png})
					code, b = v.do("POST", fmt.Sprintf("items/%d/images", it.ID), body.Bytes(), ctype)
					var acc struct {
						JobID string `json:"job_id"`
					}
					if code != 202 || json.Unmarshal(b, &acc) != nil || acc.JobID == "" {
						t.Errorf("upload: %d %.100s", code, b)
						continue
					}
					mu.Lock()
					uploads = append(uploads, upload{item: it.ID, jobID: acc.JobID})
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if len(uploads) != jobsPerRun {
			t.Fatalf("workers %d: %d of %d uploads accepted", workers, len(uploads), jobsPerRun)
		}
		// The ready count follows the last stores by a moment.
		waitFor(5*time.Second, func() bool { return imagesQueue(ctx, in).Ready == jobsPerRun })
		if q := imagesQueue(ctx, in); q.Ready != jobsPerRun || q.InFlight != 0 {
			t.Fatalf("workers %d: paused queue %s holds %d ready and %d in flight, want all %d ready and none taken",
				workers, catalog.ImagesQueue, q.Ready, q.InFlight, jobsPerRun)
		}
		start := time.Now()
		if err := in.Resume(ctx, catalog.ImagesQueue); err != nil {
			t.Fatal(err)
		}
		drained := waitFor(3*time.Minute, func() bool {
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
		t.Logf("workers %d: %d image jobs in %s = %.1f jobs/s (drained: %v)", workers, len(uploads), el.Round(time.Millisecond),
			float64(len(uploads))/el.Seconds(), drained)
		if !drained {
			t.Errorf("workers %d: the queues still hold jobs 3 minutes after the resume", workers)
		}
		if missing := c.unprocessed(ctx, in, uploads); len(missing) > 0 {
			t.Errorf("workers %d: %d of %d image jobs not processed: %q", workers, len(missing), len(uploads), missing[:min(10, len(missing))])
		}
	}
}

// imagesQueue is the image queue's row of the inspector's stats (zero when
// the stats cannot be read).
func imagesQueue(ctx context.Context, in *bus.Inspector) bus.QueueStats {
	st, err := in.Stats(ctx)
	if err != nil {
		return bus.QueueStats{}
	}
	for _, q := range st.Queues {
		if q.Queue == catalog.ImagesQueue {
			return q
		}
	}
	return bus.QueueStats{}
}

// pausesSeen counts the times the process name logged that the image queue
// was paused (its log grows across restarts).
func (c *cluster) pausesSeen(name string) int {
	b, _ := os.ReadFile(filepath.Join(c.state, "logs", name+".log"))
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "queue paused") && strings.Contains(line, fmt.Sprintf("%q", catalog.ImagesQueue)) {
			n++
		}
	}
	return n
}

// unprocessed lists the uploads whose job did not process the image: the
// item's image is not "ready", or the job is in DLQ.
func (c *cluster) unprocessed(ctx context.Context, in *bus.Inspector, uploads []upload) []string {
	dead := map[string]string{}
	if failed, err := in.FailedJobs(ctx, bus.FailedFilter{Queue: catalog.ImagesQueue}); err == nil {
		for _, f := range failed {
			dead[f.ID] = f.Error
		}
	} else {
		return []string{fmt.Sprintf("DLQ: %v", err)}
	}
	checker := newVU(c.lb, "scaling-checker", &recorder{})
	checker.do("POST", "login", []byte(`{"name":"scaling-checker"}`), "application/json")
	var out []string
	for _, u := range uploads {
		if e, ok := dead[u.jobID]; ok {
			out = append(out, fmt.Sprintf("%s (item %d) in DLQ: %.100s", u.jobID, u.item, e))
			continue
		}
		code, b := checker.do("GET", fmt.Sprintf("items/%d", u.item), nil, "")
		var got itemJSON
		if code != 200 || json.Unmarshal(b, &got) != nil || len(got.Images) != 1 || got.Images[0].Status != "ready" {
			out = append(out, fmt.Sprintf("%s (item %d): %d %.100s", u.jobID, u.item, code, b))
		}
	}
	return out
}
