package workers

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
)

// Fleet-wide limits. A concurrency cap of n is n slot keys in
// bus.LimitsBucket (c.<kind>.<key>.<i>); a job runs only while its worker
// holds one, under a lease (Config.SlotLease) the worker renews every
// third of it. A rate limit of n per period is n slot keys
// (r.<kind>.<key>.<i>); each start takes one for a period. Taking a slot
// is a compare-and-set on its revision, so two workers, on any nodes of a
// cluster, never hold the same slot. Every worker watches the slot keys of
// its limited kinds, so it knows which slots are free without asking: a
// freed slot (a purge) or an expired one (the server's marker) wakes the
// jobs waiting for it within milliseconds, and a lease or rate period that
// ends is met by a timer set for that moment, never by a polling period.
//
// A fetched job that cannot run now waits in its worker, outside the run
// slots (the worker keeps fetching and running other kinds and queues),
// kept owned with heartbeats; it has not run, so it uses no try. Beyond
// Config.MaxWaiting such jobs, a job is released (stored again to run
// later, with the tries it used carried in Jetfleet-Tries-Used) for about
// when its turn would come; a drain releases the waiting ones at once.

// MaxConcurrent caps how many jobs of this kind run at once across every
// worker process of the fleet, on every node of a NATS cluster. n must be
// at least 1. A job over the cap waits without using a try and starts
// within milliseconds of a slot being freed. Every worker registering the
// kind must give the same n.
func MaxConcurrent(n int) HandlerOption {
	return func(h *handler) {
		h.addLimit(&limitSpec{cap: true, n: n, what: fmt.Sprintf("MaxConcurrent(%d)", n)})
	}
}

// MaxConcurrentBy caps, across the fleet, how many jobs of this kind with
// the same key run at once: MaxConcurrentBy(1, userID) runs one job per
// user at a time (Laravel's WithoutOverlapping), while jobs of different
// users run in parallel. key gets the job with its decoded arguments and
// must return 1 to bus.MaxKeyLen bytes without control characters; a job
// whose key breaks that rule, or whose body does not decode into T, is
// dead-lettered with the reason.
func MaxConcurrentBy[T bus.Args](n int, key func(*Job[T]) string) HandlerOption {
	return func(h *handler) {
		h.addLimit(&limitSpec{cap: true, n: n, by: keyOf(key), keyed: true, what: fmt.Sprintf("MaxConcurrentBy(%d)", n)})
	}
}

// RateLimit lets at most n jobs of this kind start in any period of per,
// across the fleet (a sliding window: a burst of n, then one more each
// time a start leaves the window). n must be at least 1 and per at least
// a millisecond. A job over the limit waits without using a try and
// starts when a start leaves the window. The window is measured with the
// workers' clocks: keep them in sync (NTP).
func RateLimit(n int, per time.Duration) HandlerOption {
	return func(h *handler) {
		h.addLimit(&limitSpec{n: n, per: per, what: fmt.Sprintf("RateLimit(%d, %s)", n, per)})
	}
}

// RateLimitBy is RateLimit per key: at most n starts in any period of per
// for the jobs whose key is the same. key follows MaxConcurrentBy's rules.
func RateLimitBy[T bus.Args](n int, per time.Duration, key func(*Job[T]) string) HandlerOption {
	return func(h *handler) {
		h.addLimit(&limitSpec{n: n, per: per, by: keyOf(key), keyed: true, what: fmt.Sprintf("RateLimitBy(%d, %s)", n, per)})
	}
}

// limitSpec is one limit of a kind, as registered.
type limitSpec struct {
	cap   bool          // a concurrency cap; else a rate limit
	n     int           // slots
	per   time.Duration // a rate limit's period
	by    func(*bus.Job) (string, error)
	keyed bool   // MaxConcurrentBy or RateLimitBy (by is nil when their key function is)
	what  string // for messages
	// whole is the prefix of the gate on the whole kind (c.<kind>.=),
	// set when the limiter starts.
	whole string
	// avgRun is a moving average of how long the kind's jobs hold a cap's
	// slot, in nanoseconds, to guess when a released job's turn comes.
	avgRun atomic.Int64
}

func keyOf[T bus.Args](key func(*Job[T]) string) func(*bus.Job) (string, error) {
	if key == nil {
		return nil
	}
	return func(j *bus.Job) (k string, err error) {
		job := &Job[T]{Job: j}
		if err := json.Unmarshal(j.Body, &job.Args); err != nil {
			return "", fmt.Errorf("body does not decode into %T: %w", job.Args, err)
		}
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("the key function panicked: %v", p)
			}
		}()
		k = key(job)
		if err := bus.ValidateKey("limit key", k); err != nil {
			return "", err
		}
		return k, nil
	}
}

// addLimit records l on the handler; Register checks them (checkLimits).
func (h *handler) addLimit(l *limitSpec) {
	h.limits = append(h.limits, l)
}

// checkLimits reports the first bad limit of a handler of kind: Register
// panics with it, naming the kind, the option and the rule.
func (h *handler) checkLimits(kind string) error {
	caps, rates := 0, 0
	for _, l := range h.limits {
		switch {
		case l.n < 1:
			return fmt.Errorf("workers: Register(%s): %s: the limit must be at least 1", kind, l.what)
		case l.keyed && l.by == nil:
			return fmt.Errorf("workers: Register(%s): %s: the key function is nil", kind, l.what)
		case !l.cap && l.per < time.Millisecond:
			return fmt.Errorf("workers: Register(%s): %s: the period must be at least 1ms", kind, l.what)
		}
		if l.cap {
			caps++
		} else {
			rates++
		}
	}
	if caps > 1 || rates > 1 {
		return fmt.Errorf("workers: Register(%s): at most one concurrency cap (MaxConcurrent or MaxConcurrentBy) and one rate limit (RateLimit or RateLimitBy) per kind", kind)
	}
	// A cap is taken before a rate token: a token cannot be given back.
	if len(h.limits) == 2 && !h.limits[0].cap {
		h.limits[0], h.limits[1] = h.limits[1], h.limits[0]
	}
	return nil
}

const (
	// defaultSlotLease is Config.SlotLease's default.
	defaultSlotLease = 15 * time.Second
	// idleLinger is how long a finished job's cap slot stays with its
	// worker for the next job of the same key, when other slots are free.
	idleLinger = time.Second
	// contendedFor bounds how long a slot whose compare-and-set failed is
	// skipped while the watch has not yet said who took it.
	contendedFor = time.Second
	// kvRetry is the wait after a failed call to the limits bucket (an
	// election in a cluster) before trying again.
	kvRetry = 250 * time.Millisecond
	// kvTimeout bounds one call to the limits bucket: they take
	// milliseconds, and while a cluster elects a leader they are not
	// answered at all, so waiting longer only stalls the worker's
	// admissions.
	kvTimeout = 2 * time.Second
	// staleSlack is how late a renewal may be before the view is
	// suspected of being stale.
	staleSlack = time.Second
)

// rateGuard is added to a rate token's period: a job starts a moment after
// its token is taken (the compare-and-set's round trip, the hand-over to a
// goroutine), and that moment varies, so without a guard two starts of
// the same slot could land a little less than a period apart. It costs
// 1% of the rate at most.
func rateGuard(per time.Duration) time.Duration {
	return min(per/100, 10*time.Millisecond)
}

// limiter holds one Run's view of its kinds' limits and the jobs that
// wait for them.
type limiter struct {
	l      *loop
	js     jetstream.JetStream
	worker string
	lease  time.Duration
	room   int // Config.MaxWaiting
	kinds  map[string][]*limitSpec
	order  map[string]int // queue → priority (index in Config.Queues)

	mu       sync.Mutex
	gates    map[string]*gate  // by prefix c.<kind>.<token>
	queues   [][]*waiter       // waiting jobs per queue, by priority, oldest first
	nWaiting atomic.Int64      // fetched jobs in the limiter's hands
	nBlocked atomic.Int64      // those of them a limit holds back (not just a free run slot)
	byKind   map[[2]string]int // blocked jobs per queue and kind, for the presence record
	retryAt  time.Time         // after a failed bucket call
	// lastResync is when checkStale last asked for the view to be read again.
	lastResync time.Time

	kv        jetstream.KeyValue
	filters   []string    // the slot keys of the limited kinds
	resync    atomic.Bool // a call to the bucket failed: read every slot again once it answers
	wake      chan struct{}
	admitted  chan *run
	deferrals chan deferral
	watch     jetstream.KeyWatcher
	ctx       context.Context    // ends with stop
	stopPump  context.CancelFunc // handBack: no more admissions
	stopAll   context.CancelFunc // stop: no more renewals
	pumped    chan struct{}      // closed when the pump has returned
	draining  atomic.Bool        // the pump has stopped: finished jobs free their slots themselves
	lingering atomic.Bool        // the pump's timer covers the idle slots kept for reuse
	wg        sync.WaitGroup
}

// gate is one limit for one key: n slots and the local jobs that need it.
type gate struct {
	spec    *limitSpec
	kind    string
	prefix  string
	slots   map[int]*slotView // the slots seen in use (or taken, freed, contended); the others are free
	waiters int               // local waiting jobs that need this gate
	horizon time.Time         // when the last job released for this gate is due
	idles   []int             // this worker's slots that became idle, newest last (idle checks them)
	// The count of free slots, kept while the view does not change (free).
	counted    bool
	countValid time.Time
	freeCount  int
}

// slotView is what this worker knows of one slot key.
type slotView struct {
	rev       uint64    // its last revision (0: never seen)
	until     time.Time // held until; zero when free (deleted, purged, expired)
	worker    string
	contended time.Time // a compare-and-set failed here: skip until the watch tells, or this time
	mine      *holding  // this worker holds it (caps only)
	writing   bool      // a write of this worker (a claim or a release) is on its way
}

// holding is a cap slot this worker holds: for a running job, or idle
// since a job finished, kept a moment for the next one.
type holding struct {
	run       *run
	idleSince time.Time
}

// waiter is a fetched job waiting for its limits.
type waiter struct {
	r           *run
	job         *bus.Job // parsed when a key function needs it
	queue, kind string
	gates       []*gate
	fail        string // why it can never run (a bad key): dead-lettered at once
	// blocked: a limit holds it back. A waiting job whose limits have room
	// only waits for a run slot, like a job fetched ahead, and counts as
	// held by the fetch loop; a blocked one does not, so that the worker
	// keeps fetching other work.
	blocked bool
}

// admission is what an admitted job holds, freed when its handler is
// done (done).
type admission struct {
	gates []*gate
	slots []int // the cap slot held per gate; -1 for a rate token
	began time.Time
}

// deferral is a waiting job to release for later.
type deferral struct {
	r     *run
	after time.Duration
	why   string
}

// startLimits starts following the limits of the registered kinds, when
// any has one: one KV watch over their slot keys, the goroutine that
// admits waiting jobs, the one that renews leases and the ones that run
// admitted jobs. It returns once the current slots are known. A worker
// without limits gets nil, and every method of a nil limiter does nothing.
func startLimits(ctx context.Context, l *loop, worker string) (*limiter, error) {
	w := l.w
	kinds := map[string][]*limitSpec{}
	var filters []string
	for kind, h := range w.handlers {
		if len(h.limits) == 0 {
			continue
		}
		kinds[kind] = h.limits
		for _, s := range h.limits {
			filters = append(filters, bus.LimitPrefix(s.cap, kind)+".>")
			s.whole = bus.LimitPrefix(s.cap, kind) + "." + bus.WholeKind
		}
	}
	if len(kinds) == 0 {
		return nil, nil
	}
	kv, err := bus.OpenLimitsBucket(ctx, w.js, w.cfg.Bus)
	if err != nil {
		return nil, fmt.Errorf("workers: %w", err)
	}
	ls := &limiter{
		l: l, js: w.js, worker: worker, lease: max(w.cfg.SlotLease, time.Second), room: w.cfg.MaxWaiting, kinds: kinds,
		order: map[string]int{}, gates: map[string]*gate{}, queues: make([][]*waiter, len(w.queues)),
		byKind: map[[2]string]int{}, wake: make(chan struct{}, 1), admitted: make(chan *run, w.cfg.Concurrency),
		deferrals: make(chan deferral, 256), pumped: make(chan struct{}),
	}
	if w.cfg.SlotLease <= 0 {
		ls.lease = defaultSlotLease
	}
	if ls.room <= 0 {
		ls.room = max(100, 4*w.cfg.Concurrency)
	}
	for i, q := range w.queues {
		ls.order[q.name] = i
	}
	ls.kv, ls.filters = kv, filters
	if err := ls.rewatch(ctx); err != nil {
		return nil, err
	}
	actx, stopAll := context.WithCancel(context.WithoutCancel(ctx))
	pctx, stopPump := context.WithCancel(actx)
	ls.ctx, ls.stopAll, ls.stopPump = actx, stopAll, stopPump
	// A reconnection may have missed slot changes: read them all again.
	status := w.js.Conn().StatusChanged(nats.CONNECTED)
	go func() {
		for range status {
			ls.resync.Store(true)
			ls.signal()
		}
	}()
	context.AfterFunc(actx, func() { w.js.Conn().RemoveStatusListener(status) })
	ls.wg.Add(1)
	go func() { defer ls.wg.Done(); ls.renew(actx) }()
	go func() { defer close(ls.pumped); ls.pump(pctx) }()
	go ls.runDeferrals()
	for range w.cfg.Concurrency {
		go ls.runAdmitted()
	}
	return ls, nil
}

// wait takes a fetched job on the fetch loop, by the local view only. A
// job without limits, or whose limits have room now, goes on like any
// other (false): its job goroutine takes its slots once it has a run slot
// (admitNow). A job a limit holds back waits (true): it is then the
// limiter's until admitted or released.
func (ls *limiter) wait(r *run) bool {
	if ls == nil {
		return false
	}
	queue, kind := subjectNames(r.msg.Subject())
	specs := ls.kinds[kind]
	if specs == nil {
		return false
	}
	wt := &waiter{r: r, queue: queue, kind: kind}
	var tokens []string // nil while every limit is on the whole kind
	for i, s := range specs {
		if s.by == nil {
			continue
		}
		if tokens == nil {
			tokens = make([]string, len(specs))
			for j := range tokens {
				tokens[j] = bus.WholeKind
			}
		}
		if wt.job == nil {
			job, err := bus.ParseJob(r.msg)
			if err != nil {
				return false // process dead-letters it
			}
			wt.job = job
		}
		key, err := s.by(wt.job)
		if err != nil {
			wt.fail = fmt.Sprintf("%s: %v", s.what, err)
			r.limitFail = wt.fail
			break
		}
		tokens[i] = bus.KeyToken(key)
	}
	ls.mu.Lock()
	if wt.fail == "" {
		wt.gates = make([]*gate, len(specs))
		for i, s := range specs {
			token := bus.WholeKind
			if tokens != nil {
				token = tokens[i]
			}
			wt.gates[i] = ls.gate(s, kind, token)
		}
		if ls.canRun(wt, time.Now()) {
			r.lim = wt
			ls.mu.Unlock()
			return false
		}
		if int(ls.nBlocked.Load()) >= ls.room {
			after := ls.turn(wt.gates, time.Now())
			ls.mu.Unlock()
			ls.deferrals <- deferral{r: r, after: after, why: "waiting room full"}
			return true
		}
	}
	ls.enqueue(wt)
	ls.mu.Unlock()
	return true
}

// admitNow takes the slots of a job that wait let through, now that it has
// a run slot; it reports whether the job may run. When another worker took
// the room first, the job gives its run slot back and waits like any job a
// limit holds back (or, once the worker drains, is released).
func (ls *limiter) admitNow(r *run) bool {
	if ls == nil || r.lim == nil {
		return true
	}
	wt := r.lim
	r.lim = nil
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for i, g := range wt.gates {
		// A gate nobody needed may have been forgotten (prune) while the
		// job waited for its run slot: use the one the watch now updates.
		if cur := ls.gates[g.prefix]; cur != g {
			if cur == nil {
				ls.gates[g.prefix] = g
			} else {
				wt.gates[i] = cur
			}
		}
	}
	if ls.claim(ls.ctx, wt) {
		return true
	}
	<-ls.l.slots
	if ls.draining.Load() {
		ls.mu.Unlock()
		ls.deferrals <- deferral{r: r, why: "worker stopping"}
		ls.mu.Lock()
		return false
	}
	ls.enqueue(wt)
	return false
}
