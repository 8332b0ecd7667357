package workers_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/proctest"
	"github.com/jetfleet/jetfleet/workers"
)

// The fleet tests run real worker processes: this test binary, started
// again with helperEnv set, becomes a worker (or a dispatcher) instead of
// running the tests. Each helper prints what it did as JSON lines on
// standard output, with its own clock (all run on one machine).

const helperEnv = "WORKERS_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "worker":
		os.Exit(helperWorker())
	case "dispatch":
		os.Exit(helperDispatch())
	default:
		fmt.Fprintln(os.Stderr, "unknown helper", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// fleetJob is the job of the fleet tests: it records its start and end,
// sleeps MS milliseconds, fails for good when Fail is set, and fails (to
// be retried) while its attempt is below FailUntil.
type fleetJob struct {
	N         int    `json:"n"`
	User      string `json:"user,omitempty"`
	MS        int    `json:"ms,omitempty"`
	Fail      bool   `json:"fail,omitempty"`
	FailUntil int    `json:"fail_until,omitempty"`
}

func (fleetJob) Kind() string { return "fleet-job" }

// event is one line a helper worker prints: a handler's start or end.
type event struct {
	Ev       string `json:"ev"`
	N        int    `json:"n"`
	User     string `json:"user"`
	ID       string `json:"id"`
	Attempt  int    `json:"attempt"`
	Released int    `json:"released"`
	T        int64  `json:"t"` // Unix nanoseconds
	Proc     int    `json:"-"` // which process printed it (set by the test)
}

func (e event) at() time.Time { return time.Unix(0, e.T) }

func logLevel() zerolog.Level {
	if l, err := zerolog.ParseLevel(os.Getenv("HELPER_LOG")); err == nil && l != zerolog.NoLevel {
		return l
	}
	return zerolog.InfoLevel
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envDur(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// helperWorker runs a worker of fleet jobs with the limit HELPER_LIMIT
// ("cap:N", "by:N" per user, "rate:N:PER", "none") until SIGTERM.
func helperWorker() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	nc, err := nats.Connect(os.Getenv("NATS_URL"), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	cfg := workers.Config{
		Concurrency: envInt("HELPER_CONCURRENCY", 8), Tries: envInt("HELPER_TRIES", 3),
		Backoff: []time.Duration{100 * time.Millisecond}, SlotLease: envDur("HELPER_LEASE", 0), Grace: 5 * time.Second,
		Bus:    bus.Config{Replicas: envInt("HELPER_REPLICAS", 1), AckWait: envDur("HELPER_ACK_WAIT", 0)},
		Logger: zerolog.New(os.Stderr).With().Timestamp().Logger().Level(logLevel()),
	}
	w := workers.New(js, cfg)
	if d := os.Getenv("HELPER_STORE_RETRIES_FROM"); d != "" {
		workers.SetStoreRetriesFrom(w, envDur("HELPER_STORE_RETRIES_FROM", 0))
	}
	var mu sync.Mutex
	out := json.NewEncoder(os.Stdout)
	emit := func(ev string, j *workers.Job[fleetJob]) {
		mu.Lock()
		defer mu.Unlock()
		_ = out.Encode(event{Ev: ev, N: j.Args.N, User: j.Args.User, ID: j.ID, Attempt: j.Attempt, Released: j.Released, T: time.Now().UnixNano()})
	}
	var opts []workers.HandlerOption
	kind, arg, _ := strings.Cut(os.Getenv("HELPER_LIMIT"), ":")
	switch kind {
	case "cap":
		n, _ := strconv.Atoi(arg)
		opts = append(opts, workers.MaxConcurrent(n))
	case "by":
		n, _ := strconv.Atoi(arg)
		opts = append(opts, workers.MaxConcurrentBy(n, func(j *workers.Job[fleetJob]) string { return j.Args.User }))
	case "rate":
		n, per, _ := strings.Cut(arg, ":")
		nn, _ := strconv.Atoi(n)
		d, _ := time.ParseDuration(per)
		opts = append(opts, workers.RateLimit(nn, d))
	}
	workers.Register(w, func(ctx context.Context, j *workers.Job[fleetJob]) error {
		emit("start", j)
		defer emit("end", j)
		if j.Args.MS > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(j.Args.MS) * time.Millisecond):
			}
		}
		if j.Args.Fail {
			return workers.Permanent(errors.New("asked to fail"))
		}
		if j.Attempt < j.Args.FailUntil {
			return errors.New("not yet")
		}
		return nil
	}, opts...)
	if err := w.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// dispatchResult is one line helperDispatch prints.
type dispatchResult struct {
	OK  string `json:"ok,omitempty"`  // the stored job's ID
	Dup string `json:"dup,omitempty"` // the holder named by a DuplicateError
	Err string `json:"err,omitempty"`
}

// helperDispatch dispatches HELPER_EACH jobs with the unique key
// HELPER_KEY from each of HELPER_GOROUTINES goroutines, all starting at
// HELPER_AT (Unix nanoseconds), and prints each result.
func helperDispatch() int {
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	at, _ := strconv.ParseInt(os.Getenv("HELPER_AT"), 10, 64)
	var mu sync.Mutex
	out := json.NewEncoder(os.Stdout)
	var wg sync.WaitGroup
	for range envInt("HELPER_GOROUTINES", 1) {
		wg.Go(func() {
			time.Sleep(time.Until(time.Unix(0, at)))
			for range envInt("HELPER_EACH", 1) {
				id, err := d.Dispatch(context.Background(), fleetJob{MS: 50}, bus.Unique(os.Getenv("HELPER_KEY")))
				var res dispatchResult
				var dup *bus.DuplicateError
				switch {
				case err == nil:
				case errors.As(err, &dup):
					res.Dup = dup.JobID
				default:
					res.Err = err.Error()
				}
				if err == nil {
					res.OK = id
				}
				mu.Lock()
				_ = out.Encode(res)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return 0
}

// helperProc is a helper process started by a test.
type helperProc struct {
	*proctest.Proc
	i int
}

// startHelper runs this test binary as the helper role with env.
func startHelper(t *testing.T, i int, role string, env ...string) *helperProc {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p := proctest.Start(t, bin, t.TempDir(), proctest.Env(append([]string{helperEnv + "=" + role}, env...)...))
	t.Cleanup(func() { // a race in a helper (go test -race) fails the test too
		if strings.Contains(p.Stderr.String(), "WARNING: DATA RACE") {
			t.Errorf("the race detector reported a race in %s %d:\n%s", role, i, p.Stderr)
		}
	})
	return &helperProc{Proc: p, i: i}
}

// startWorkers starts n helper workers on url with env, and waits until
// each has started.
func startWorkers(t *testing.T, n int, url string, env ...string) []*helperProc {
	t.Helper()
	var ps []*helperProc
	for i := range n {
		ps = append(ps, startHelper(t, i, "worker", append([]string{"NATS_URL=" + url}, env...)...))
	}
	for _, p := range ps {
		p.WaitFor(t, "worker started", 30*time.Second)
	}
	return ps
}

// events reads every event the processes printed so far.
func events(t *testing.T, ps []*helperProc) []event {
	t.Helper()
	var all []event
	for _, p := range ps {
		sc := bufio.NewScanner(strings.NewReader(p.Stdout.String()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e event
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Ev != "" {
				e.Proc = p.i
				all = append(all, e)
			}
		}
	}
	slices.SortStableFunc(all, func(a, b event) int {
		if a.T != b.T {
			return compareInt64(a.T, b.T)
		}
		return strings.Compare(a.Ev, b.Ev) // "end" before "start" at the same instant
	})
	return all
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// span is one run of a handler: its start and end (or the moment its
// process was killed).
type span struct {
	n, proc, attempt int
	user, id         string
	start, end       time.Time
}

// spans pairs the start and end events of each run; a run whose process
// was killed ends at killedAt[proc].
func spans(evs []event, killedAt map[int]time.Time) []span {
	type key struct {
		proc int
		id   string
		att  int
	}
	open := map[key]*span{}
	var out []*span
	for _, e := range evs {
		k := key{e.Proc, e.ID, e.Attempt}
		switch e.Ev {
		case "start":
			s := &span{n: e.N, proc: e.Proc, attempt: e.Attempt, user: e.User, id: e.ID, start: e.at()}
			open[k] = s
			out = append(out, s)
		case "end":
			if s := open[k]; s != nil {
				s.end = e.at()
				delete(open, k)
			}
		}
	}
	res := make([]span, 0, len(out))
	for _, s := range out {
		if s.end.IsZero() {
			if t, ok := killedAt[s.proc]; ok {
				s.end = t
			}
		}
		res = append(res, *s)
	}
	return res
}

// maxOverlap is the largest number of spans running at one instant among
// those keep selects (a span without an end runs on).
func maxOverlap(ss []span, keep func(span) bool) int {
	type edge struct {
		t time.Time
		d int
	}
	var edges []edge
	for _, s := range ss {
		if keep != nil && !keep(s) {
			continue
		}
		edges = append(edges, edge{s.start, 1})
		if !s.end.IsZero() {
			edges = append(edges, edge{s.end, -1})
		}
	}
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
		return a.d - b.d // an end before a start at the same instant
	})
	cur, most := 0, 0
	for _, e := range edges {
		cur += e.d
		most = max(most, cur)
	}
	return most
}

// firstOverlapAt is the first instant at or after from when n of the
// spans keep selects run at once; zero when it never happens.
func firstOverlapAt(ss []span, from time.Time, n int, keep func(span) bool) time.Time {
	type edge struct {
		t time.Time
		d int
	}
	var edges []edge
	for _, s := range ss {
		if !keep(s) {
			continue
		}
		edges = append(edges, edge{s.start, 1})
		if !s.end.IsZero() {
			edges = append(edges, edge{s.end, -1})
		}
	}
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
		return a.d - b.d
	})
	cur := 0
	for _, e := range edges {
		cur += e.d
		if cur >= n && !e.t.Before(from) {
			return e.t
		}
	}
	return time.Time{}
}

// dispatchFleetJobs stores jobs and returns their IDs.
func dispatchFleetJobs(t *testing.T, d *bus.Dispatcher, jobs []fleetJob, opts ...bus.Option) []string {
	t.Helper()
	params := make([]bus.DispatchManyParams, len(jobs))
	for i, j := range jobs {
		params[i] = bus.DispatchManyParams{Args: j, Opts: opts}
	}
	ids, err := d.DispatchMany(context.Background(), params...)
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// waitEvents waits until cond holds for the processes' events.
func waitEvents(t *testing.T, ps []*helperProc, timeout time.Duration, what string, cond func([]event) bool) []event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		evs := events(t, ps)
		if cond(evs) {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s (%d events)", what, timeout, len(evs))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ended counts the distinct jobs (by N) with an end event.
func ended(evs []event) int {
	seen := map[int]bool{}
	for _, e := range evs {
		if e.Ev == "end" {
			seen[e.N] = true
		}
	}
	return len(seen)
}
