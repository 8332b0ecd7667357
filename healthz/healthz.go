// Package healthz tells a load balancer (and Kubernetes) whether this node
// can serve: `GET /up` (Laravel 11's route), `/livez` and `/readyz`, backed
// by cached dependency checks, plus the drain sequence of a graceful stop
// and an optional HAProxy agent-check port.
//
//	h := healthz.New(healthz.Config{},
//		healthz.Check{Name: "nats", Critical: true, Run: natsCheck},
//		healthz.Check{Name: "db.replicas", Run: replicaCheck}, // down → degraded
//	)
//	mux := http.NewServeMux()
//	h.Routes(mux)                            // register before any session middleware
//	mux.Handle("/", app)
//	srv := &http.Server{Handler: h.Track(mux)}
//	err := h.Serve(ctx, srv, ln, healthz.DrainOptions{}) // ctx ends on SIGTERM
//
// # Statuses
//
// A node is "up" (HTTP 200), "down" (503: a critical check failed) or
// "draining" (503: Drain was called). There is no fourth node status: a
// node whose only failures are non-critical checks, or checks whose error
// wraps ErrDegraded, is "up" with HTTP 200, those checks are reported with
// status "degraded", and the JSON report lists their names under
// "degraded". A balancer that matches on "up" or on the status code keeps
// the node; an operator sees what is wrong:
//
//	{"status":"up","degraded":["db.replicas"],"checks":{
//	  "db.replicas":{"status":"degraded","error":"dial tcp 10.0.0.7:3306: connection refused","took_ms":0.41,"critical":false},
//	  "nats":{"status":"ok","took_ms":0.18,"critical":true}}}
//
// Each check is "ok", "degraded" or "down":
//
//   - nil error → "ok";
//   - an error wrapping ErrDegraded → "degraded", even when Critical;
//   - any other error → "down" when Critical, "degraded" otherwise.
//
// # Caching and single flight
//
// A check's result is reused for Config.CacheFor (1s by default) after it
// is produced. At most one run of a check is in flight at any time, however
// many probes arrive: a probe that finds the check running waits for that
// run's result. A run is given Check.Timeout (1s by default); when it has
// not returned by then its result is a timeout error, published at once, so
// no response waits longer than the slowest check's timeout. A Run that
// ignores its context and keeps going past its timeout is not started
// again until it returns: probes meanwhile get its timeout result. Runs use
// a context of their own, not the probe's: one impatient client does not
// fail a result that others share.
//
// The health handlers read cached results and write nothing: no session,
// no store, no log line. Register them on a mux that is not wrapped in
// session middleware (or wrap only the application's routes).
package healthz

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrDegraded marks a check failure that degrades the node without taking
// it out of the balancer, even when the check is Critical: wrap it, as in
// fmt.Errorf("2 of 3 replicas down: %w", healthz.ErrDegraded).
var ErrDegraded = errors.New("degraded")

// Node statuses, the "status" of a Report.
const (
	StatusUp       = "up"
	StatusDown     = "down"
	StatusDraining = "draining"
)

// Check statuses, the "status" of a CheckResult.
const (
	CheckOK       = "ok"
	CheckDegraded = "degraded"
	CheckDown     = "down"
)

// Check is one dependency check.
type Check struct {
	// Name names the check in reports: "nats", "sessions", "db.primary",
	// "db.replicas". An empty name becomes "check-<n>" (n from 1, in
	// argument order); a repeated name gets a "#<n>" suffix and always
	// fails, so the mistake shows in every report.
	Name string
	// Critical makes a failure take the node down (503). A failure of a
	// non-critical check only degrades the node (still 200).
	Critical bool
	// Timeout bounds one run. Zero or negative: 1s.
	Timeout time.Duration
	// DownAfter lets a Critical check fail for this long, without a
	// success in between, before it takes the node down; until then its
	// failures are reported "degraded". Use it for a dependency that every
	// node shares and that recovers by itself within seconds, such as a
	// JetStream cluster electing a leader: taking every node out of the
	// balancer at once only turns slow requests into refused ones. Zero:
	// the first failure takes the node down.
	DownAfter time.Duration
	// Run performs the check: nil means ok; an error wrapping ErrDegraded
	// means degraded even when Critical. A nil Run always fails. A panic in
	// Run is recovered and reported as the check's error.
	Run func(ctx context.Context) error
}

// Config tunes a Health. The zero value is ready to use.
type Config struct {
	// CacheFor is how long a check's result is reused after it is
	// produced. Zero: 1s. Negative: never reused (every probe that finds no
	// run in flight starts one; runs are still single-flight).
	CacheFor time.Duration
	// AgentMaxInFlight is the number of in-flight requests (counted by
	// Track) at which ServeAgent reports the lowest weight, 1%. Below it
	// the weight falls linearly from 100%. Zero or negative: ServeAgent
	// reports no weight.
	AgentMaxInFlight int
}

// Health runs checks, caches their results, serves the health routes and
// holds the node's drain state. Create it with New; it is safe for
// concurrent use.
type Health struct {
	cacheFor    time.Duration
	maxInFlight int
	checks      []*checker
	draining    atomic.Bool
	inFlight    atomic.Int64
	longest     time.Duration            // the longest check timeout
	last        atomic.Pointer[snapshot] // the latest report, rendered
	drained     *snapshot                // the report while draining

	mu     sync.Mutex
	serves map[*serving]struct{} // the Serve calls in progress
}

// New returns a Health running checks, in the order given.
func New(cfg Config, checks ...Check) *Health {
	h := &Health{cacheFor: cfg.CacheFor, maxInFlight: cfg.AgentMaxInFlight, serves: map[*serving]struct{}{}}
	if h.cacheFor == 0 {
		h.cacheFor = time.Second
	}
	seen := make(map[string]bool, len(checks))
	for i, c := range checks {
		c = normalize(c, i, seen)
		h.longest = max(h.longest, c.Timeout)
		h.checks = append(h.checks, &checker{Check: c})
	}
	h.drained = render(Report{Status: StatusDraining, Checks: map[string]CheckResult{}}, nil)
	return h
}

// normalize applies a check's defaults and turns an unusable check into
// one that always fails with an error naming the problem.
func normalize(c Check, i int, seen map[string]bool) Check {
	if c.Timeout <= 0 {
		c.Timeout = time.Second
	}
	if c.Name == "" {
		c.Name = fmt.Sprintf("check-%d", i+1)
	}
	if seen[c.Name] {
		dup := c.Name
		c.Name = fmt.Sprintf("%s#%d", dup, i+1)
		c.Run = failing(fmt.Errorf("healthz: check %d repeats the name %q: names must be unique", i+1, dup))
	}
	seen[c.Name] = true
	if c.Run == nil {
		c.Run = failing(fmt.Errorf("healthz: check %q has no Run func", c.Name))
	}
	return c
}

func failing(err error) func(context.Context) error {
	return func(context.Context) error { return err }
}

// Drain puts the node in drain: from now on /up and /readyz answer 503
// "draining" (without running checks) and the agent says "drain". It
// cannot be undone; calling it again does nothing.
func (h *Health) Drain() { h.draining.Store(true) }

// Draining reports whether Drain has been called.
func (h *Health) Draining() bool { return h.draining.Load() }

// Track wraps next to count its in-flight requests, reported by InFlight
// and used for the agent's weight. Wrap the application's handler; health
// probes count too when they go through it, which does no harm.
func (h *Health) Track(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.inFlight.Add(1)
		defer h.inFlight.Add(-1)
		next.ServeHTTP(w, r)
	})
}

// InFlight is the number of requests inside handlers wrapped by Track.
func (h *Health) InFlight() int { return int(h.inFlight.Load()) }

// Report is the state of the node, as /up reports it.
type Report struct {
	// Status is StatusUp, StatusDown or StatusDraining.
	Status string `json:"status"`
	// Degraded names the checks whose status is "degraded", in check
	// order; empty when none is.
	Degraded []string `json:"degraded,omitempty"`
	// Checks holds each check's result by name. It is empty when draining:
	// a draining node runs no checks.
	Checks map[string]CheckResult `json:"checks"`

	order []string // check names in registration order
}

// CheckResult is the outcome of one run of a check.
type CheckResult struct {
	// Status is CheckOK, CheckDegraded or CheckDown.
	Status string `json:"status"`
	// Error is the check's error; empty when ok.
	Error string `json:"error,omitempty"`
	// TookMS is how long the run took, in milliseconds (microsecond
	// precision); a timed-out run took its timeout.
	TookMS float64 `json:"took_ms"`
	// Critical repeats Check.Critical.
	Critical bool `json:"critical"`
}

// HTTPStatus is the HTTP status code for the report: 200 when up, else 503.
func (r Report) HTTPStatus() int {
	if r.Status == StatusUp {
		return http.StatusOK
	}
	return http.StatusServiceUnavailable
}

// Status runs (or reuses) every check, concurrently, and reports the node's
// state. It returns within the longest check timeout, or when ctx ends:
// checks it stopped waiting for are then reported as failed with ctx's
// error.
func (h *Health) Status(ctx context.Context) Report {
	rep := h.current(ctx).rep
	rep.Checks = maps.Clone(rep.Checks)
	rep.Degraded = slices.Clone(rep.Degraded)
	return rep
}

// current returns the snapshot of the checks' latest results, reusing the
// last one (and its rendered bodies) while no check has a new result.
func (h *Health) current(ctx context.Context) *snapshot {
	if h.Draining() {
		return h.drained
	}
	now := time.Now()
	last := h.last.Load()
	if last != nil && h.unchanged(last, now) {
		return last
	}
	pubs := make([]*published, len(h.checks))
	var wg sync.WaitGroup
	for i, c := range h.checks {
		if p := c.pub.Load(); c.fresh(p, now, h.cacheFor) {
			pubs[i] = p
			continue
		}
		wg.Go(func() { pubs[i] = c.result(ctx, h.cacheFor) })
	}
	wg.Wait()
	s := h.snapshot(pubs)
	h.last.Store(s)
	return s
}

// unchanged reports whether s holds every check's latest result, all
// still fresh at now.
func (h *Health) unchanged(s *snapshot, now time.Time) bool {
	for i, c := range h.checks {
		if p := c.pub.Load(); p != s.pubs[i] || !c.fresh(p, now, h.cacheFor) {
			return false
		}
	}
	return true
}

// snapshot builds the report of pubs and renders it in every format.
func (h *Health) snapshot(pubs []*published) *snapshot {
	rep := Report{Status: StatusUp, Checks: make(map[string]CheckResult, len(pubs)), order: make([]string, len(pubs))}
	for i, p := range pubs {
		name := h.checks[i].Name
		rep.Checks[name], rep.order[i] = p.res, name
		switch p.res.Status {
		case CheckDown:
			rep.Status = StatusDown
		case CheckDegraded:
			rep.Degraded = append(rep.Degraded, name)
		}
	}
	return render(rep, pubs)
}
