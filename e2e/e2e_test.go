//go:build e2e

// Package e2e runs the whole jetfleet topology (deploy/cluster/run.sh) on
// loopback and injects faults under load. Build tag e2e keeps it out of
// `go test ./...`: go test -tags e2e -v -timeout 15m ./e2e
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/examples/catalog/catalog"
	"github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

const runScript = "../deploy/cluster/run.sh"

// cluster is one run.sh state directory on free ports.
type cluster struct {
	t     *testing.T
	state string
	env   []string
	vars  map[string]string // cluster.env
	lb    string            // balancer URL, with a trailing slash
	webs  []string          // web node URLs, with a trailing slash
}

func requireTools(t *testing.T) {
	for _, c := range []string{"haproxy", "mariadbd", "mariadb-install-db", "mariadb", "envsubst", "curl", "setsid"} {
		if _, err := exec.LookPath(c); err != nil {
			if _, err2 := os.Stat("/usr/sbin/" + c); err2 != nil {
				t.Skipf("%s not installed", c)
			}
		}
	}
}

// startCluster builds jetfleet (NATS, provisioning) and the service's
// binary, the catalog (migrate, web nodes, workers), as a team deploys its
// own node-built binary, and runs run.sh start with workers worker
// processes; run.sh down runs at cleanup.
func startCluster(t *testing.T, workers int) *cluster {
	requireTools(t)
	state, err := os.MkdirTemp("", "jfe")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(state)
	bins := t.TempDir()
	bin, appBin := filepath.Join(bins, "jetfleet"), filepath.Join(bins, "catalog")
	for out, pkg := range map[string]string{bin: "../cmd/jetfleet", appBin: "../examples/catalog"} {
		if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, b)
		}
	}
	p := natstest.FreePorts(t, 19)
	c := &cluster{t: t, state: state}
	c.env = []string{
		"JETFLEET_CLUSTER_DIR=" + state,
		"JETFLEET_BIN=" + bin,
		"JETFLEET_APP_BIN=" + appBin,
		fmt.Sprintf("JETFLEET_CLUSTER_WORKERS=%d", workers),
		fmt.Sprintf("JETFLEET_CLUSTER_NATS_PORTS=%d %d %d", p[0], p[1], p[2]),
		fmt.Sprintf("JETFLEET_CLUSTER_ROUTE_PORTS=%d %d %d", p[3], p[4], p[5]),
		fmt.Sprintf("JETFLEET_CLUSTER_NATS_MONITOR_PORTS=%d %d %d", p[6], p[7], p[8]),
		fmt.Sprintf("JETFLEET_CLUSTER_DB_PORTS=%d %d", p[9], p[10]),
		fmt.Sprintf("JETFLEET_CLUSTER_WEB_PORTS=%d %d %d", p[11], p[12], p[13]),
		fmt.Sprintf("JETFLEET_CLUSTER_AGENT_PORTS=%d %d %d", p[14], p[15], p[16]),
		fmt.Sprintf("JETFLEET_CLUSTER_LB_PORT=%d", p[17]),
		fmt.Sprintf("JETFLEET_CLUSTER_LB_STATS_PORT=%d", p[18]),
		"JETFLEET_CLUSTER_DRAIN_DELAY=3s",
		"JETFLEET_CLUSTER_GRACE=10s",
	}
	t.Cleanup(func() {
		if t.Failed() {
			keep := filepath.Join(os.TempDir(), fmt.Sprintf("jetfleet-e2e-logs-%d", time.Now().Unix()))
			if err := exec.Command("cp", "-a", filepath.Join(state, "logs"), keep).Run(); err == nil {
				t.Logf("logs kept in %s", keep)
			}
			logs, _ := filepath.Glob(filepath.Join(state, "logs", "*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				if len(b) > 2500 {
					b = b[len(b)-2500:]
				}
				t.Logf("--- %s (end)\n%s", l, b)
			}
		}
		if out, err := c.script(3*time.Minute, "down"); err != nil {
			t.Errorf("run.sh down: %v\n%s", err, out)
		}
	})
	if out, err := c.script(5*time.Minute, "start"); err != nil {
		t.Fatalf("run.sh start: %v\n%s", err, out)
	}
	c.vars = readEnv(t, filepath.Join(state, "cluster.env"))
	c.lb = c.vars["JETFLEET_LB_URL"]
	c.webs = strings.Split(c.vars["JETFLEET_WEB_URLS"], ",")
	return c
}

func readEnv(t *testing.T, path string) map[string]string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := sc.Text()
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			m[strings.TrimSpace(k)] = v
		}
	}
	return m
}

func (c *cluster) script(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{runScript}, args...)...)
	cmd.Env = append(os.Environ(), c.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *cluster) mustScript(args ...string) {
	if out, err := c.script(2*time.Minute, args...); err != nil {
		c.t.Errorf("run.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (c *cluster) running(name string) bool {
	out, _ := c.script(30*time.Second, "status")
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == name {
			return f[2] == "running"
		}
	}
	return false
}

// serversUp is how many of web1..3 HAProxy reports UP.
func (c *cluster) serversUp() int {
	resp, err := http.Get(c.vars["JETFLEET_LB_STATS_URL"] + ";csv")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, ",")
		if len(f) > 17 && f[0] == "jetfleet_web" && strings.HasPrefix(f[1], "web") && f[17] == "UP" {
			n++
		}
	}
	return n
}

func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(250 * time.Millisecond)
	}
	return cond()
}

func httpStatus(url string) int {
	cl := &http.Client{Timeout: 3 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (c *cluster) jetstream(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	nc, err := nats.Connect(c.vars["NATS_URL"], nats.UserInfo(c.vars["NATS_USER"], c.vars["NATS_PASSWORD"]),
		nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// ---------------------------------------------------------------------------
// Load.

// recorder counts every request sent to the balancer.
type recorder struct {
	mu        sync.Mutex
	lat       []time.Duration
	total     int
	failed    int
	failures  []string
	kinds     map[string]int // failed requests by method, route and status
	drainFail int
	drainReqs int
	draining  atomic.Bool
	retried   int // requests sent more than once
	resent    int // attempts beyond the first
	replayed  int // requests answered with a stored response
}

// attempts counts a request that took n attempts.
func (r *recorder) attempts(n int, replayed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if n > 1 {
		r.retried++
		r.resent += n - 1
	}
	if replayed {
		r.replayed++
	}
}

// routeOf is a path with its numbers replaced: items/{id}/images.
func routeOf(path string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		if p != "" && strings.Trim(p, "0123456789") == "" {
			parts[i] = "{id}"
		}
	}
	return strings.Join(parts, "/")
}

func (r *recorder) add(d time.Duration, failed bool, what string) {
	drain := r.draining.Load()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.total++
	r.lat = append(r.lat, d)
	if drain {
		r.drainReqs++
	}
	if failed {
		r.failed++
		if drain {
			r.drainFail++
		}
		if r.kinds == nil {
			r.kinds = map[string]int{}
		}
		f := strings.Fields(what)
		if len(f) >= 4 {
			r.kinds[f[1]+" /"+routeOf(strings.TrimSuffix(f[2], ":"))+" "+f[3]]++
		}
		r.failures = append(r.failures, time.Now().UTC().Format("15:04:05.000")+" "+what)
		if len(r.failures) > 40 {
			r.failures = r.failures[1:]
		}
	}
}

func (r *recorder) percentile(p float64) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.lat) == 0 {
		return 0
	}
	s := slices.Clone(r.lat)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// vu is one virtual user.
type vu struct {
	name string
	base string
	http *http.Client
	csrf string
	rec  *recorder
}

func newVU(base, name string, rec *recorder) *vu {
	jar, _ := cookiejar.New(nil)
	return &vu{name: name, base: base, rec: rec, http: &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends one request through the balancer as a well-behaved client
// does: an unsafe request carries an Idempotency-Key, and a request whose
// connection failed, or that got a 5xx or a 409 with Retry-After (its key
// still running elsewhere), is sent again with the same key, up to
// maxAttempts times with backoff. A request that still has a transport
// error or a 5xx is failed, after which the user pauses for failurePause.
func (v *vu) do(method, path string, body []byte, ctype string) (int, []byte) {
	key := ""
	if method != http.MethodGet && method != http.MethodHead {
		key = rand.Text()
	}
	start := time.Now()
	var (
		code     int
		b        []byte
		err      error
		replayed bool
	)
	for attempt := 1; ; attempt++ {
		var retryAfter time.Duration
		code, b, retryAfter, replayed, err = v.attempt(method, path, body, ctype, key)
		retry := err != nil || code >= 500 || (code == http.StatusConflict && retryAfter > 0)
		if !retry || attempt == maxAttempts {
			v.rec.attempts(attempt, replayed)
			break
		}
		time.Sleep(max(retryAfter, min(100*time.Millisecond<<(attempt-1), 2*time.Second)))
	}
	failed := err != nil || code >= 500
	what := fmt.Sprintf("%s %s %s: %d %v %.120s", v.name, method, path, code, err, b)
	v.rec.add(time.Since(start), failed, what)
	if failed {
		time.Sleep(failurePause) // as a user would, rather than hammer a failing site
	}
	return code, b
}

// maxAttempts bounds the tries of one request (about 15 s of backoff).
const maxAttempts = 10

// attempt sends a request once.
func (v *vu) attempt(method, path string, body []byte, ctype, key string) (code int, b []byte, retryAfter time.Duration, replayed bool, err error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, v.base+path, rd)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if method != http.MethodGet && v.csrf != "" {
		req.Header.Set("X-CSRF-Token", v.csrf)
	}
	resp, err := v.http.Do(req)
	if err != nil {
		return 0, nil, 0, false, err
	}
	defer resp.Body.Close()
	b, err = io.ReadAll(resp.Body)
	if s, e := strconv.Atoi(resp.Header.Get("Retry-After")); e == nil && s > 0 {
		retryAfter = min(time.Duration(s)*time.Second, 5*time.Second)
	}
	return resp.StatusCode, b, retryAfter, resp.Header.Get("Idempotent-Replayed") == "true", err
}

// failurePause is how long a virtual user waits after a failed request.
const failurePause = time.Second

type upload struct {
	item  int64
	jobID string
}

type loadResult struct {
	mu         sync.Mutex
	sessLost   []string
	ryw        []string
	uploads    []upload
	items      int
	jobsDoneIn int // images seen ready by the VUs during the load
}

func (l *loadResult) note(list *[]string, s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	*list = append(*list, s)
}

type itemJSON struct {
	ID          int64  `json:"id"`
	Owner       string `json:"owner"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Images      []struct {
		Name       string `json:"name"`
		Status     string `json:"status"`
		Error      string `json:"error"`
		Thumbnails []struct {
			Size int `json:"size"`
		} `json:"thumbnails"`
	} `json:"images"`
}

// run is one VU's loop until stop.
func (v *vu) run(stop <-chan struct{}, res *loadResult, png []byte, uploadEvery int) {
	code, b := v.do("POST", "login", []byte(fmt.Sprintf(`{"name":%q}`, v.name)), "application/json")
	var login struct {
		CSRF string `json:"csrf_token"`
	}
	if code != 200 || json.Unmarshal(b, &login) != nil || login.CSRF == "" {
		res.note(&res.sessLost, fmt.Sprintf("%s: login %d %.100s", v.name, code, b))
		return
	}
	v.csrf = login.CSRF
	for i := 0; i < 10000; i++ {
		select {
		case <-stop:
			return
		default:
		}
		// Still logged in?
		code, b := v.do("GET", "me", nil, "")
		if code < 500 && code != 0 && (code != 200 || !bytes.Contains(b, []byte(fmt.Sprintf("%q", v.name)))) {
			res.note(&res.sessLost, fmt.Sprintf("%s: GET /me %d %.100s", v.name, code, b))
			return
		}
		// Create and read back.
		name := fmt.Sprintf("%s-item-%d", v.name, i)
		desc := fmt.Sprintf("made by %s, round %d", v.name, i)
		code, b = v.do("POST", "items", []byte(fmt.Sprintf(`{"name":%q,"description":%q}`, name, desc)), "application/json")
		if code != 200 && code != 201 {
			continue // counted as failed if 5xx; a 4xx shows in the session check
		}
		var it itemJSON
		if json.Unmarshal(b, &it) != nil || it.ID == 0 {
			res.note(&res.ryw, fmt.Sprintf("%s: create answered %.100s", v.name, b))
			continue
		}
		res.mu.Lock()
		res.items++
		res.mu.Unlock()
		code, b = v.do("GET", fmt.Sprintf("items/%d", it.ID), nil, "")
		if code < 500 && code != 0 {
			var got itemJSON
			if code != 200 || json.Unmarshal(b, &got) != nil || got.Name != name || got.Description != desc {
				res.note(&res.ryw, fmt.Sprintf("%s: item %d read back %d %.100s", v.name, it.ID, code, b))
			}
		}
		if uploadEvery <= 0 || i%uploadEvery != 0 {
			continue
		}
		body, ctype := catalogtest.UploadBody(catalogtest.File{Name: "p.png", Data: png})
		code, b = v.do("POST", fmt.Sprintf("items/%d/images", it.ID), body.Bytes(), ctype)
		var acc struct {
			JobID string `json:"job_id"`
		}
		if code != 202 || json.Unmarshal(b, &acc) != nil || acc.JobID == "" {
			continue
		}
		res.mu.Lock()
		res.uploads = append(res.uploads, upload{item: it.ID, jobID: acc.JobID})
		res.mu.Unlock()
		// Wait for the thumbnails, bounded.
		for range 40 {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
			}
			code, b = v.do("GET", fmt.Sprintf("items/%d", it.ID), nil, "")
			var got itemJSON
			if code == 200 && json.Unmarshal(b, &got) == nil && len(got.Images) > 0 && got.Images[0].Status != "processing" {
				if got.Images[0].Status == "ready" {
					res.mu.Lock()
					res.jobsDoneIn++
					res.mu.Unlock()
				}
				break
			}
		}
	}
}

// runLoad runs users VUs for d and returns what they saw.
func runLoad(base string, users int, d time.Duration, rec *recorder, uploadEvery int) *loadResult {
	res := &loadResult{}
	png := catalogtest.PNG(48, 32)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	prefix := fmt.Sprintf("vu%d", time.Now().UnixNano()%100000)
	for i := range users {
		v := newVU(base, fmt.Sprintf("%s-%02d", prefix, i), rec)
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Duration(i) * 20 * time.Millisecond)
			v.run(stop, res, png, uploadEvery)
		}()
	}
	time.Sleep(d)
	close(stop)
	wg.Wait()
	return res
}

// ---------------------------------------------------------------------------
// The fault-injection run.

func TestFaultInjection(t *testing.T) {
	c := startCluster(t, 2)
	_, js := c.jetstream(t)
	in, err := bus.NewInspector(js, bus.Config{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	const users, loadFor = 50, 60 * time.Second
	rec := &recorder{}

	var faults []string
	faultsDone := make(chan struct{})
	go func() {
		defer close(faultsDone)
		step := func(s string) { faults = append(faults, time.Now().UTC().Format("15:04:05.0")+" "+s) }
		sleep := func(d time.Duration) { time.Sleep(d) }
		sleep(5 * time.Second)
		step("kill -9 web1")
		c.mustScript("kill", "web1", "KILL")
		sleep(3 * time.Second)
		c.mustScript("restart", "web1")
		ok := waitFor(30*time.Second, func() bool { return c.serversUp() == 3 })
		step(fmt.Sprintf("web1 restarted, back in the pool: %v", ok))

		step("SIGTERM web2 (drain)")
		rec.draining.Store(true)
		c.mustScript("kill", "web2", "TERM")
		ok = waitFor(30*time.Second, func() bool { return !c.running("web2") })
		step(fmt.Sprintf("web2 exited: %v", ok))
		c.mustScript("restart", "web2")
		ok = waitFor(30*time.Second, func() bool { return c.serversUp() == 3 })
		rec.draining.Store(false)
		step(fmt.Sprintf("web2 restarted, back in the pool: %v", ok))

		sleep(2 * time.Second)
		step("kill -9 nats2")
		c.mustScript("kill", "nats2", "KILL")
		sleep(4 * time.Second)
		c.mustScript("restart", "nats2")
		ok = waitFor(60*time.Second, func() bool {
			return httpStatus(strings.Split(c.vars["JETFLEET_NATS_MONITOR_URLS"], ",")[1]+"healthz") == 200
		})
		step(fmt.Sprintf("nats2 restarted, healthz 200: %v", ok))

		sleep(2 * time.Second)
		step("kill -9 worker1")
		c.mustScript("kill", "worker1", "KILL")
		sleep(2 * time.Second)
		c.mustScript("restart", "worker1")
		step("worker1 restarted")

		sleep(2 * time.Second)
		step("stop db-replica (SIGTERM) for 10s")
		c.mustScript("kill", "db-replica", "TERM")
		waitFor(20*time.Second, func() bool { return !c.running("db-replica") })
		sleep(10 * time.Second)
		c.mustScript("restart", "db-replica")
		step("db-replica restarted")
	}()

	start := time.Now()
	res := runLoad(c.lb, users, loadFor, rec, 3)
	elapsed := time.Since(start)
	select {
	case <-faultsDone:
	case <-time.After(2 * time.Minute):
		t.Fatal("the fault sequence did not finish")
	}
	for _, f := range faults {
		t.Logf("fault: %s", f)
	}

	// Settle: every image job done (ready) or failed, JOBS empty. A job
	// whose worker was killed comes back after AckWait (30s).
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	checker := newVU(c.lb, "checker", &recorder{})
	status := map[string]string{} // job ID -> image status
	pending := func() int {
		n := 0
		dead := map[string]bool{} // dead-lettered: settled, whatever the image says
		if failed, err := in.FailedJobs(ctx, bus.FailedFilter{Queue: catalog.ImagesQueue}); err == nil {
			for _, f := range failed {
				dead[f.ID] = true
			}
		}
		for _, u := range res.uploads {
			if s := status[u.jobID]; s == "ready" || s == "failed" || dead[u.jobID] {
				continue
			}
			code, b := checker.do("GET", fmt.Sprintf("items/%d", u.item), nil, "")
			var got itemJSON
			if code == 200 && json.Unmarshal(b, &got) == nil && len(got.Images) > 0 {
				status[u.jobID] = got.Images[0].Status
			}
			if s := status[u.jobID]; s != "ready" && s != "failed" && !dead[u.jobID] {
				n++
			}
		}
		return n
	}
	// Items are readable by anyone (GET /items/{id} is api, not protected)?
	// Log in the checker in case they are not.
	checker.do("POST", "login", []byte(`{"name":"checker"}`), "application/json")
	var stats *bus.Stats
	settleStart := time.Now()
	settled := waitFor(150*time.Second, func() bool {
		if pending() > 0 {
			return false
		}
		var err error
		stats, err = in.Stats(ctx)
		if err != nil {
			return false
		}
		for _, q := range stats.Queues {
			if q.Ready != 0 || q.InFlight != 0 {
				return false
			}
		}
		return true
	})
	settle := time.Since(settleStart)

	// Jobs not done: they must be in DLQ with a reason.
	dlq := map[string]*bus.FailedJob{}
	if failed, err := in.FailedJobs(ctx, bus.FailedFilter{Queue: catalog.ImagesQueue}); err == nil {
		for _, f := range failed {
			dlq[f.ID] = f
		}
	} else {
		t.Errorf("DLQ: %v", err)
	}
	ready, failedImg, inDLQ, missing := 0, 0, 0, 0
	var missingIDs []string
	for _, u := range res.uploads {
		switch s := status[u.jobID]; {
		case s == "ready":
			ready++
		case dlq[u.jobID] != nil && dlq[u.jobID].Error != "":
			inDLQ++
			t.Logf("dead letter %s (item %d, %d attempts): %.200s", u.jobID, u.item, dlq[u.jobID].Attempts, dlq[u.jobID].Error)
		case s == "failed":
			failedImg++ // the handler marked the image failed (undecodable): processed
		default:
			missing++
			missingIDs = append(missingIDs, fmt.Sprintf("%s(item %d, %q)", u.jobID, u.item, s))
		}
	}

	// Figures.
	rec.mu.Lock()
	total, failed, drainReqs, drainFail := rec.total, rec.failed, rec.drainReqs, rec.drainFail
	retried, resent, replayed := rec.retried, rec.resent, rec.replayed
	failures := slices.Clone(rec.failures)
	kinds := fmt.Sprint(rec.kinds)
	rec.mu.Unlock()
	failPct := 100 * float64(failed) / float64(max(total, 1))
	t.Logf("load: %d VUs for %s: %d requests at the balancer, %.1f requests/s", users, elapsed.Round(time.Millisecond), total, float64(total)/elapsed.Seconds())
	t.Logf("latency: p50 %s, p99 %s", rec.percentile(0.50).Round(time.Microsecond), rec.percentile(0.99).Round(time.Microsecond))
	t.Logf("failed requests: %d of %d (%.3f%%, limit 0)", failed, total, failPct)
	t.Logf("failed during the SIGTERM drain: %d of %d", drainFail, drainReqs)
	t.Logf("retried by the clients (same Idempotency-Key): %d requests, %d attempts resent, %d answered with a stored response", retried, resent, replayed)
	t.Logf("failed requests by kind: %s", kinds)
	for _, f := range failures[max(0, len(failures)-10):] {
		t.Logf("  failed: %s", f)
	}
	for _, line := range c.logLines("web", `"level":"error"`, 10) {
		t.Logf("  web node error: %.300s", line)
	}
	resent, unsafeResent := c.haproxyRetries()
	t.Logf("resent by HAProxy to another node: %d requests; unsafe ones by route: %v", resent, unsafeResent)
	t.Logf("idempotency keys taken over from a dead node: %d; requests that may have run twice: %d",
		len(c.logLines("web", "took over a key", 1000)), len(c.logLines("web", "may have run twice", 1000)))
	t.Logf("sessions lost: %d", len(res.sessLost))
	t.Logf("read-your-writes violations: %d (items created: %d)", len(res.ryw), res.items)
	t.Logf("image jobs: %d dispatched, %d ready, %d failed by the handler, %d in DLQ with a reason, %d missing",
		len(res.uploads), ready, failedImg, inDLQ, missing)
	t.Logf("jobs/s during the load: %.1f (thumbnails seen ready by the VUs); settled %v after %s",
		float64(res.jobsDoneIn)/elapsed.Seconds(), settled, settle.Round(time.Millisecond))

	// Every unsafe request carries an Idempotency-Key and is resent, by
	// HAProxy or by the client, until it is answered: none may fail.
	if failed > 0 {
		t.Errorf("%d requests (%.3f%%) failed at the balancer after their retries; want none", failed, failPct)
	}
	if drainFail != 0 {
		t.Errorf("%d requests failed during web2's SIGTERM drain", drainFail)
	}
	if len(res.sessLost) > 0 {
		t.Errorf("sessions lost: %q", res.sessLost[:min(10, len(res.sessLost))])
	}
	if len(res.ryw) > 0 {
		t.Errorf("read-your-writes violations: %q", res.ryw[:min(10, len(res.ryw))])
	}
	if len(res.uploads) == 0 {
		t.Error("no image job was dispatched")
	}
	if missing > 0 {
		t.Errorf("%d image jobs neither processed nor in DLQ: %v", missing, missingIDs[:min(10, len(missingIDs))])
	}

	// JOBS: nothing stranded.
	if stats, err = in.Stats(ctx); err != nil {
		t.Fatalf("stats: %v", err)
	}
	stranded := missing > 0
	for _, q := range stats.Queues {
		t.Logf("JOBS queue %s: ready %d, in flight %d, failed %d", q.Queue, q.Ready, q.InFlight, q.Failed)
		if q.Ready != 0 || q.InFlight != 0 {
			t.Errorf("queue %s has stranded jobs: ready %d, in flight %d", q.Queue, q.Ready, q.InFlight)
			stranded = true
		}
	}
	if stranded {
		c.explainStranded(t, js, stats)
	}
	if s, err := js.Stream(ctx, "JOBS"); err != nil {
		t.Errorf("JOBS: %v", err)
	} else if info, err := s.Info(ctx, jetstream.WithSubjectFilter("jobs.>")); err != nil {
		t.Errorf("JOBS info: %v", err)
	} else {
		var n uint64
		for _, v := range info.State.Subjects {
			n += v
		}
		t.Logf("JOBS: %d messages left on jobs.>", n)
		if n != 0 {
			t.Errorf("JOBS keeps %d messages on jobs.> after the run: %v", n, info.State.Subjects)
		}
	}

	// Every node answers /up.
	for i, w := range c.webs {
		if code := httpStatus(w + "up"); code != 200 {
			t.Errorf("web%d /up: %d", i+1, code)
		}
	}
	if code := httpStatus(c.lb + "up"); code != 200 {
		t.Errorf("balancer /up: %d", code)
	}
	for i, m := range strings.Split(c.vars["JETFLEET_NATS_MONITOR_URLS"], ",") {
		if code := httpStatus(m + "healthz"); code != 200 {
			t.Errorf("nats%d /healthz: %d", i+1, code)
		}
	}
	if code := httpStatus(c.lb + "metrics"); code == 200 {
		t.Errorf("the balancer serves /metrics publicly")
	}
	t.Logf("after the run: web1-3 /up, balancer /up and nats1-3 /healthz checked")
}

// explainStranded logs what the consumers and the workers say about jobs
// that did not finish, and has each worker print its goroutines (SIGQUIT)
// into its log, which the test keeps.
func (c *cluster) explainStranded(t *testing.T, js jetstream.JetStream, stats *bus.Stats) {
	ctx := context.Background()
	for _, q := range stats.Queues {
		cons, err := js.Consumer(ctx, "JOBS", "q-"+q.Queue)
		if err != nil {
			t.Logf("consumer q-%s: %v", q.Queue, err)
			continue
		}
		i := cons.CachedInfo()
		t.Logf("consumer q-%s: leader %s, pending %d, ack pending %d, waiting %d, redelivered %d, delivered %d/%d, ack floor %d/%d",
			q.Queue, i.Cluster.Leader, i.NumPending, i.NumAckPending, i.NumWaiting, i.NumRedelivered,
			i.Delivered.Consumer, i.Delivered.Stream, i.AckFloor.Consumer, i.AckFloor.Stream)
	}
	for _, w := range stats.Workers {
		t.Logf("worker %s pid %d: running %d of %d, counts %+v", w.Host, w.PID, w.Running, w.Concurrency, w.Counts)
	}
	for _, name := range []string{"worker1", "worker2"} {
		if !c.running(name) {
			continue
		}
		_, _ = c.script(10*time.Second, "kill", name, "QUIT")
		// The runtime exits once it has written the goroutine dump.
		if !waitFor(10*time.Second, func() bool { return !c.running(name) }) {
			t.Logf("%s still running 10s after SIGQUIT: its goroutine dump may be incomplete", name)
		}
	}
}

// haproxyRetries counts the requests HAProxy's log shows as retried (the
// retries field of each httplog line, "+N" when redispatched), and those
// of them with an unsafe method by method and route.
func (c *cluster) haproxyRetries() (resent int, unsafe map[string]int) {
	unsafe = map[string]int{}
	b, _ := os.ReadFile(filepath.Join(c.state, "logs", "haproxy.log"))
	for _, line := range strings.Split(string(b), "\n") {
		m := haproxyConnField.FindStringSubmatch(line)
		if m == nil || m[1] == "0" {
			continue
		}
		resent++
		if m[2] != http.MethodGet && m[2] != http.MethodHead {
			unsafe[m[2]+" "+routeOf(m[3])]++
		}
	}
	return resent, unsafe
}

// haproxyConnField finds the retries (actconn/feconn/beconn/srv_conn/
// retries), the method and the path of an httplog line.
var haproxyConnField = regexp.MustCompile(` \d+/\d+/\d+/\d+/(\+?\d+) \d+/\d+ "([A-Z]+) (\S+)`)

// logLines returns up to n lines holding want from the logs of the
// processes whose names start with prefix.
func (c *cluster) logLines(prefix, want string, n int) []string {
	logs, _ := filepath.Glob(filepath.Join(c.state, "logs", prefix+"*.log"))
	var out []string
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.Contains(line, want) && len(out) < n {
				out = append(out, filepath.Base(l)+": "+line)
			}
		}
	}
	return out
}
