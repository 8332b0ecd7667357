package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
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

// gate returns the gate of spec for token, creating it. mu is held.
func (ls *limiter) gate(s *limitSpec, kind, token string) *gate {
	prefix := s.whole
	if token != bus.WholeKind {
		prefix = bus.LimitPrefix(s.cap, kind) + "." + token
	}
	g := ls.gates[prefix]
	if g == nil {
		g = newGate(s, kind, prefix)
		ls.gates[prefix] = g
	}
	return g
}

func newGate(s *limitSpec, kind, prefix string) *gate {
	return &gate{spec: s, kind: kind, prefix: prefix, slots: map[int]*slotView{}}
}

// slot is the view of slot i, made when it has none.
func (g *gate) slot(i int) *slotView {
	s := g.slots[i]
	if s == nil {
		s = &slotView{}
		g.slots[i] = s
	}
	return s
}

func (ls *limiter) enqueue(wt *waiter) {
	i := ls.order[wt.queue]
	ls.queues[i] = append(ls.queues[i], wt)
	for _, g := range wt.gates {
		g.waiters++
	}
	ls.nWaiting.Add(1)
	ls.setBlocked(wt, !ls.canRun(wt, time.Now()))
	ls.signal()
}

// canRun reports whether every limit of wt has room for it now, by the
// view (a job with an invalid key is never held back). mu is held.
func (ls *limiter) canRun(wt *waiter, now time.Time) bool {
	if wt.fail != "" {
		return true
	}
	for _, g := range wt.gates {
		if g.spec.cap && g.idle() >= 0 && g.free(now, ls) > 0 {
			continue
		}
		if g.usable(now) < 0 {
			return false
		}
	}
	return true
}

// setBlocked records whether a limit holds wt back. mu is held.
func (ls *limiter) setBlocked(wt *waiter, b bool) {
	if wt.blocked == b {
		return
	}
	wt.blocked = b
	k := [2]string{wt.queue, wt.kind}
	if b {
		ls.nBlocked.Add(1)
		ls.byKind[k]++
		select { // the fetch loop may fetch in its place
		case ls.l.wake <- struct{}{}:
		default:
		}
		return
	}
	ls.nBlocked.Add(-1)
	if ls.byKind[k]--; ls.byKind[k] <= 0 {
		delete(ls.byKind, k)
	}
}

// dequeue removes wt from the waiting jobs. mu is held.
func (ls *limiter) dequeue(wt *waiter) {
	i := ls.order[wt.queue]
	q := ls.queues[i]
	for j, x := range q {
		if x == wt {
			ls.queues[i] = append(q[:j:j], q[j+1:]...)
			break
		}
	}
	for _, g := range wt.gates {
		g.waiters--
	}
	ls.setBlocked(wt, false)
	ls.nWaiting.Add(-1)
}

func (ls *limiter) signal() {
	select {
	case ls.wake <- struct{}{}:
	default:
	}
}

// waitingNow is how many fetched jobs a limit holds back: the fetch loop
// does not count them as held, so it keeps fetching other work.
func (ls *limiter) waitingNow() int {
	if ls == nil {
		return 0
	}
	return int(ls.nBlocked.Load())
}

// waitingCounts is waitingNow per queue and kind, for the presence record.
func (ls *limiter) waitingCounts() map[string]map[string]int {
	if ls == nil {
		return nil
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	out := map[string]map[string]int{}
	for k, n := range ls.byKind {
		if out[k[0]] == nil {
			out[k[0]] = map[string]int{}
		}
		out[k[0]][k[1]] = n
	}
	return out
}

// free is how many slots of g nobody holds now. It is counted again only
// after the view changed (touch) or a slot held by another worker may
// have expired: a finished job's slot kept for the next one changes
// nothing, so the jobs of a cap far above the load cost no scan. mu is
// held.
func (g *gate) free(now time.Time, ls *limiter) int {
	if g.counted && now.Before(g.countValid) {
		return g.freeCount
	}
	held, valid := 0, now.Add(time.Hour)
	for _, s := range g.slots {
		if !s.isFree(now) {
			held++
			if s.mine == nil && s.until.Before(valid) {
				valid = s.until
			}
		}
	}
	g.counted, g.countValid, g.freeCount = true, valid, g.spec.n-held
	return g.freeCount
}

// touch notes a change of the view of g's slots. mu is held.
func (g *gate) touch() { g.counted = false }

// becameIdle notes that this worker's slot i of g serves no job now. mu
// is held.
func (g *gate) becameIdle(i int) {
	if len(g.idles) > 4*len(g.slots)+16 { // stale entries: start over
		g.idles = g.idles[:0]
		for j, s := range g.slots {
			if s.mine != nil && s.mine.run == nil && j != i {
				g.idles = append(g.idles, j)
			}
		}
	}
	g.idles = append(g.idles, i)
}

func (s *slotView) isFree(now time.Time) bool {
	return s.mine == nil && !s.until.After(now)
}

// usable: free, and no claim of this worker (another of its goroutines)
// is on its way to it.
func (s *slotView) usable(now time.Time) bool {
	return s.isFree(now) && !s.writing && !s.contended.After(now)
}

// idle is the index of an idle cap slot this worker holds, or -1: the
// last one that became idle (a stack, checked as it is read).
func (g *gate) idle() int {
	for len(g.idles) > 0 {
		i := g.idles[len(g.idles)-1]
		if s := g.slots[i]; s != nil && s.mine != nil && s.mine.run == nil {
			return i
		}
		g.idles = g.idles[:len(g.idles)-1]
	}
	return -1
}

// nextFree is when the first held slot of g is free by time (a lease or
// rate period ends); zero when none will.
func (g *gate) nextFree(now time.Time) time.Time {
	var next time.Time
	for _, s := range g.slots {
		t := s.until
		if s.mine != nil || !t.After(now) {
			t = s.contended // a contended free slot: look again when it times out
			if !t.After(now) {
				continue
			}
		}
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	return next
}

// turn guesses how long until a job needing gates would get its turn
// here: behind the jobs already waiting and the ones released before it,
// at the pace of the slowest gate (a rate limit's period per slot, or a
// cap's average run per slot). It moves each gate's horizon, so the jobs
// released one after another come back one after another. mu is held.
func (ls *limiter) turn(gates []*gate, now time.Time) time.Duration {
	var due time.Time
	for _, g := range gates {
		unit := g.spec.per
		if g.spec.cap {
			unit = time.Duration(g.spec.avgRun.Load())
			if unit <= 0 {
				unit = firstPositive(time.Duration(ls.l.pace.avg.Load()), 100*time.Millisecond) // a guess: it is corrected when the job comes back
			}
		}
		step := unit / time.Duration(g.spec.n)
		at := now.Add(time.Duration(g.waiters) * step)
		if g.horizon.After(at) {
			at = g.horizon
		}
		at = at.Add(step)
		g.horizon = at
		if at.After(due) {
			due = at
		}
	}
	after := due.Sub(now)
	after += time.Duration(rand.Int64N(int64(after)/10 + 1)) // spread those released together
	return min(max(after, 100*time.Millisecond), 10*time.Minute)
}

// apply updates the view with one entry of the watch. mu is held.
func (ls *limiter) apply(e jetstream.KeyValueEntry) {
	key := e.Key()
	dot := strings.LastIndexByte(key, '.')
	if dot < 0 {
		return
	}
	i, err := strconv.Atoi(key[dot+1:])
	prefix := key[:dot]
	g := ls.gates[prefix]
	if g == nil {
		if e.Operation() != jetstream.KeyValuePut {
			return
		}
		g = ls.gateFor(prefix)
		if g == nil {
			return
		}
	}
	if err != nil || i < 0 || i >= g.spec.n {
		return // a slot of a larger n: another worker's setting
	}
	s := g.slot(i)
	if e.Revision() < s.rev {
		return // older than what this worker wrote itself
	}
	s.rev, s.contended = e.Revision(), time.Time{}
	if e.Operation() == jetstream.KeyValuePut {
		var v bus.LimitSlot
		_ = json.Unmarshal(e.Value(), &v)
		s.until, s.worker = v.Until, v.Worker
	} else {
		s.until, s.worker = time.Time{}, ""
	}
	if s.mine != nil && s.worker != ls.worker {
		ls.l.w.log.Warn().Str("slot", key).Msg("lost a concurrency slot: its lease ran out and another worker took it (renewals failed for a whole lease)")
		s.mine = nil
	}
	if g.spec.cap && ls.adopt(s, time.Now()) {
		g.becameIdle(i)
	}
	g.touch()
	if g.waiters > 0 {
		ls.signal()
	}
	ls.prune(g)
}

// gateFor makes the gate of a slot key's prefix seen in the watch, when it
// belongs to a registered limit. mu is held.
func (ls *limiter) gateFor(prefix string) *gate {
	parts := strings.SplitN(prefix, ".", 3)
	if len(parts) != 3 {
		return nil
	}
	for _, s := range ls.kinds[parts[1]] {
		if (parts[0] == "c") == s.cap {
			g := newGate(s, parts[1], prefix)
			ls.gates[prefix] = g
			return g
		}
	}
	return nil
}

// prune forgets a gate nobody here needs whose slots are all free and
// unheld, so that the view of a per-key limit does not grow with every
// key ever seen. mu is held.
func (ls *limiter) prune(g *gate) {
	if g.waiters > 0 {
		return
	}
	for _, s := range g.slots {
		if s.mine != nil || s.writing || !s.until.IsZero() {
			return
		}
	}
	delete(ls.gates, g.prefix)
}

// rewatch (re)starts the watch of the slot keys: it reads every current
// slot, replaces the view with them (keeping what this worker holds),
// and then follows the changes. It runs at start, and again after a call
// to the bucket failed or the connection came back: in a cluster, the
// node that served the watch may be the one that died, and the watch
// would only notice after its heartbeats are missed (about 10 s).
func (ls *limiter) rewatch(ctx context.Context) error {
	w, err := ls.kv.WatchFiltered(context.WithoutCancel(ctx), slices.Clone(ls.filters)) // it rewrites the slice
	if err != nil {
		return fmt.Errorf("workers: watch %s: %w", bus.LimitsBucket, err)
	}
	var initial []jetstream.KeyValueEntry
	timeout := time.After(initialPausesWait)
	for done := false; !done; {
		select {
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				done = true
				break
			}
			initial = append(initial, e)
		case <-timeout:
			_ = w.Stop()
			return fmt.Errorf("workers: no reply from bucket %s within %s", bus.LimitsBucket, initialPausesWait)
		}
	}
	ls.mu.Lock()
	old := ls.watch
	ls.watch = w
	for _, g := range ls.gates {
		g.touch()
		for _, s := range g.slots {
			s.rev, s.until, s.worker, s.contended = 0, time.Time{}, "", time.Time{}
			if s.mine != nil {
				s.worker = ls.worker // until the bucket says otherwise
			}
		}
	}
	for _, e := range initial {
		ls.apply(e)
	}
	ls.mu.Unlock()
	if old != nil {
		_ = old.Stop()
	}
	ls.signal()
	ls.wg.Add(1)
	go func() { defer ls.wg.Done(); ls.follow(w) }()
	return nil
}

// follow applies the watch's updates until it stops.
func (ls *limiter) follow(w jetstream.KeyWatcher) {
	for e := range w.Updates() {
		if e == nil {
			continue
		}
		ls.mu.Lock()
		if ls.watch == w {
			ls.apply(e)
		}
		ls.mu.Unlock()
	}
}

// troubled notes a failed call to the bucket: the next admissions wait a
// moment, and the view is read again once the bucket answers.
func (ls *limiter) troubled() {
	ls.resync.Store(true)
	ls.retryAt = time.Now().Add(kvRetry)
}

// done gives back what a finished job held (called once per run, when its
// run slot is freed): a rate token is spent; a cap slot becomes idle, and
// the admitting goroutine decides whether it serves the next job here or
// goes back to the bucket.
func (ls *limiter) done(r *run) {
	if ls == nil {
		return
	}
	if a := r.adm; a != nil {
		now := time.Now()
		full := false
		ls.mu.Lock()
		for i, g := range a.gates {
			if a.slots[i] < 0 {
				continue
			}
			if s := g.slots[a.slots[i]]; s != nil && s.mine != nil && s.mine.run == r {
				m := s.mine
				m.run, m.idleSince = nil, now
				g.becameIdle(a.slots[i])
				full = full || g.free(now, ls) == 0
			}
			observe(&g.spec.avgRun, now.Sub(a.began))
		}
		if ls.draining.Load() { // nobody admits jobs any more: free the slots now
			ls.giveBack(context.Background(), now.Add(idleLinger), func(time.Time) {})
		}
		ls.mu.Unlock()
		// The admitting goroutine decides what the idle slot does: serve a
		// waiting job, go back to the bucket (a full cap), or stay a
		// moment for the next job. With slots to spare and nobody waiting,
		// its timer already covers the last case: no need to wake it.
		if full || ls.nWaiting.Load() > 0 || !ls.lingering.Load() {
			ls.signal()
		}
		return
	}
	if ls.nWaiting.Load() > 0 {
		ls.signal() // a run slot is free for a waiting job
	}
}

// observe adds d to a moving average (weight 1/8).
func observe(avg *atomic.Int64, d time.Duration) {
	for {
		old := avg.Load()
		next := int64(d)
		if old > 0 {
			next = old + (int64(d)-old)/8
		}
		if avg.CompareAndSwap(old, max(next, 1)) {
			return
		}
	}
}

// pump admits waiting jobs as their limits allow, oldest first within a
// queue and queues in priority order, and gives idle cap slots back. It
// sleeps until the watch, a finished job or a new waiting job wakes it,
// or until the next moment a slot frees by time.
func (ls *limiter) pump(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if ls.resync.Load() && !time.Now().Before(ls.retryAfter()) {
			ls.resync.Store(false)
			err := ls.rewatch(ctx)
			ls.l.w.log.Debug().Err(err).Msg("limits: read every slot again")
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				ls.mu.Lock()
				ls.troubled()
				ls.mu.Unlock()
			}
		}
		next := ls.admit(ctx)
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), time.Millisecond)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-ls.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// admit makes one pass over the waiting jobs and the idle slots and
// returns when it should run again by time (zero: only when woken).
func (ls *limiter) admit(ctx context.Context) time.Time {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := time.Now()
	var next time.Time
	soon := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	if now.Before(ls.retryAt) {
		return ls.retryAt
	}
	blocked := map[*gate]bool{}
	for qi := range ls.queues {
		for i := 0; i < len(ls.queues[qi]); i++ {
			wt := ls.queues[qi][i]
			if ctx.Err() != nil {
				return time.Time{}
			}
			if wt.fail == "" && !ls.ready(wt, now, blocked, soon) {
				ls.setBlocked(wt, true)
				continue
			}
			ls.setBlocked(wt, false)
			if !ls.reserveRunSlot(ctx) {
				return time.Time{}
			}
			if wt.fail == "" && !ls.claim(ctx, wt) {
				<-ls.l.slots
				now = time.Now()
				if now.Before(ls.retryAt) {
					return ls.retryAt
				}
				continue
			}
			ls.dequeue(wt) // the job stays in held: it was counted when fetched
			i--
			ls.admitted <- wt.r
			now = time.Now()
		}
	}
	ls.giveBack(ctx, now, soon)
	return next
}

// ready reports whether every gate of wt has a slot for it now, marking
// a gate that has none as blocked for the rest of the pass (the jobs
// behind wt on that gate wait too: oldest first). mu is held.
func (ls *limiter) ready(wt *waiter, now time.Time, blocked map[*gate]bool, soon func(time.Time)) bool {
	for _, g := range wt.gates {
		if blocked[g] {
			return false
		}
		if g.spec.cap && g.idle() >= 0 && g.free(now, ls) > 0 {
			continue
		}
		if g.usable(now) < 0 {
			blocked[g] = true
			soon(g.nextFree(now))
			soon(ls.checkStale(g, now))
			return false
		}
	}
	return true
}

// checkStale looks for signs that the watch has stopped telling this
// worker about g's slots (in a cluster, the node serving the watch may
// have died; the watch itself notices only after missing heartbeats, about
// 10 s): a cap slot held by another worker whose renewal is overdue (they
// come every third of a lease; a dead holder's are overdue too), or a slot
// whose compare-and-set failed and of which the watch said nothing since.
// Either makes the view be read again, at most once per third of a lease.
// It returns when to look again. mu is held.
func (ls *limiter) checkStale(g *gate, now time.Time) time.Time {
	var next time.Time
	for _, s := range g.slots {
		due := s.contended
		if g.spec.cap && s.mine == nil && s.until.After(now) {
			due = s.until.Add(-ls.lease + ls.lease/3 + staleSlack)
		}
		if due.IsZero() {
			continue
		}
		if !due.After(now) {
			if now.Sub(ls.lastResync) >= ls.lease/3 {
				ls.lastResync = now
				ls.resync.Store(true)
				ls.signal()
			}
			continue
		}
		if next.IsZero() || due.Before(next) {
			next = due
		}
	}
	return next
}

// usable is a free slot of g to try, picked at random so that workers
// racing for the same gate seldom pick the same one; -1 when none.
func (g *gate) usable(now time.Time) int {
	n := g.spec.n
	// Random probes find a free slot at once while few are taken, and
	// spread the workers racing for a gate over different slots.
	for range 8 {
		i := rand.IntN(n)
		if s := g.slots[i]; s == nil || s.usable(now) {
			return i
		}
	}
	for i, s := range g.slots {
		if s.usable(now) {
			return i
		}
	}
	if len(g.slots) < n { // a slot never seen is free
		start := rand.IntN(n)
		for j := range n {
			if i := (start + j) % n; g.slots[i] == nil {
				return i
			}
		}
	}
	return -1
}

// reserveRunSlot takes one of the worker's run slots for a job about to be
// admitted, waiting (in turn with the other jobs of the worker) for one to
// be free. mu is held and released while it waits.
func (ls *limiter) reserveRunSlot(ctx context.Context) bool {
	select {
	case ls.l.slots <- struct{}{}:
		return true
	default:
	}
	ls.mu.Unlock()
	defer ls.mu.Lock()
	select {
	case ls.l.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// claim takes a slot of every gate of wt, in order (the cap before the
// rate token, which cannot be given back). A cap slot this worker holds
// idle is used as it is; any other is taken with a compare-and-set. On
// failure, cap slots taken stay with this worker, idle. mu is held and
// released during calls to the bucket.
func (ls *limiter) claim(ctx context.Context, wt *waiter) bool {
	a := &admission{gates: wt.gates, slots: make([]int, len(wt.gates))}
	for gi, g := range wt.gates {
		now := time.Now()
		if g.spec.cap {
			if i := g.idle(); i >= 0 && g.free(now, ls) > 0 {
				g.slots[i].mine.run = wt.r
				a.slots[gi] = i
				continue
			}
		}
		i, ok := ls.take(ctx, g, wt)
		if !ok {
			for k := range gi {
				if a.slots[k] >= 0 {
					if m := wt.gates[k].slots[a.slots[k]].mine; m != nil && m.run == wt.r {
						m.run, m.idleSince = nil, time.Now()
						wt.gates[k].becameIdle(a.slots[k])
					}
				}
			}
			return false
		}
		a.slots[gi] = i
		if !g.spec.cap {
			a.slots[gi] = -1
		}
	}
	a.began = time.Now()
	wt.r.adm = a
	return true
}

// take claims one free slot of g for wt with a compare-and-set on its
// revision, trying the free slots the view shows until one is taken or
// none is left. mu is held and released during each call.
func (ls *limiter) take(ctx context.Context, g *gate, wt *waiter) (int, bool) {
	for {
		now := time.Now()
		i := g.usable(now)
		if i < 0 {
			return -1, false
		}
		s := g.slot(i)
		rev, wasFree := s.rev, s.until.IsZero()
		until := now.Add(ls.lease)
		if !g.spec.cap {
			until = now.Add(g.spec.per + rateGuard(g.spec.per))
		}
		slot := bus.LimitSlot{Until: until, Worker: ls.worker, JobID: jobID(wt.r)}
		key := g.prefix + "." + strconv.Itoa(i)
		s.writing = true
		ls.mu.Unlock()
		newRev, err := ls.claimSlot(ctx, key, rev, slot)
		if err != nil && errors.Is(err, jetstream.ErrKeyExists) && wasFree {
			// The view says free at another revision: a marker it never
			// saw (it may have forgotten the slot), or one that expired.
			// Ask the leader, and take it if it is free there.
			newRev, err = ls.claimFree(ctx, key, slot, err)
		}
		ls.mu.Lock()
		s.writing = false
		g.touch()
		if err != nil {
			if !errors.Is(err, jetstream.ErrKeyExists) {
				ls.l.w.log.Warn().Err(err).Str("slot", key).Msg("limits bucket unavailable; waiting jobs try again shortly")
				ls.troubled()
				return -1, false
			}
			if s.rev == rev {
				s.contended = time.Now().Add(contendedFor)
			}
			continue
		}
		if newRev > s.rev {
			s.rev, s.until, s.worker, s.contended = newRev, slot.Until, ls.worker, time.Time{}
		}
		if g.spec.cap {
			s.mine = &holding{run: wt.r}
		}
		ls.l.w.log.Debug().Str("slot", key).Uint64("rev", newRev).Str("job_id", jobID(wt.r)).Msg("limits: slot taken")
		return i, true
	}
}

// claimFree claims key at the revision its leader has, when the leader
// says it is free; else it returns failed, the compare-and-set's error.
func (ls *limiter) claimFree(ctx context.Context, key string, slot bus.LimitSlot, failed error) (uint64, error) {
	rctx, cancel := context.WithTimeout(ctx, kvTimeout)
	rev, held, err := bus.ReadLimitSlot(rctx, ls.js, key)
	cancel()
	if err != nil || held != nil && held.Until.After(time.Now()) {
		return 0, failed
	}
	return ls.claimSlot(ctx, key, rev, slot)
}

func (ls *limiter) claimSlot(ctx context.Context, key string, rev uint64, slot bus.LimitSlot) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	return bus.ClaimLimitSlot(ctx, ls.js, key, rev, slot)
}

// giveBack returns idle cap slots to the bucket: at once when their cap
// is full (a job waiting anywhere in the fleet gets its turn), else once
// they have been idle for idleLinger. mu is held and released during
// calls to the bucket.
func (ls *limiter) giveBack(ctx context.Context, now time.Time, soon func(time.Time)) {
	type idle struct {
		g   *gate
		i   int
		rev uint64
	}
	var free []idle
	holds := false
	for _, g := range ls.gates {
		if !g.spec.cap {
			continue
		}
		full := -1 // g.free, computed once per gate when needed
		for i, s := range g.slots {
			m := s.mine
			if m == nil {
				continue
			}
			holds = true
			if m.run != nil {
				continue
			}
			if full < 0 {
				full = g.free(now, ls)
			}
			if full == 0 || now.Sub(m.idleSince) >= idleLinger {
				free = append(free, idle{g, i, s.rev})
				continue
			}
			soon(m.idleSince.Add(idleLinger))
		}
	}
	// While this worker holds cap slots, a sweep every idleLinger gives
	// back those left idle, so a finished job need not wake the pump.
	if holds {
		soon(now.Add(idleLinger))
	}
	ls.lingering.Store(holds)
	for _, f := range free {
		s := f.g.slots[f.i]
		if s == nil || s.mine == nil || s.mine.run != nil || s.rev != f.rev {
			continue // changed while mu was released for an earlier one
		}
		s.mine, s.writing = nil, true
		f.g.touch()
		s.contended = now.Add(contendedFor) // taken again on the watch's word, like every other worker
		key := f.g.prefix + "." + strconv.Itoa(f.i)
		ls.mu.Unlock()
		rev, err := ls.freeSlot(ctx, key, f.rev)
		ls.l.w.log.Debug().Err(err).Str("slot", key).Uint64("rev", f.rev).Uint64("marker", rev).Msg("limits: slot given back")
		ls.mu.Lock()
		s.writing = false
		f.g.touch()
		switch {
		case err == nil:
			if rev > s.rev { // older news of this slot, still on its way, is ignored
				s.rev, s.until, s.worker = rev, time.Time{}, ""
			}
		case errors.Is(err, jetstream.ErrKeyExists):
			// Written since: by this worker's renewal (then it is still
			// this worker's, and goes back on the next pass) or by
			// another worker after the lease ran out.
			if ls.adopt(s, time.Now()) {
				f.g.becameIdle(f.i)
			}
		default:
			// It may or may not be free: the view is read again, and if
			// the slot is still this worker's it is adopted and given back.
			ls.l.w.log.Warn().Err(err).Str("slot", key).Msg("could not free a concurrency slot; trying again shortly")
			ls.troubled()
		}
	}
}

// adopt takes back as idle a cap slot the bucket says this worker holds
// while this worker does not know it (a write whose answer timed out, or a
// renewal that crossed a release), so that it is given back now rather
// than held until its lease ends. mu is held.
func (ls *limiter) adopt(s *slotView, now time.Time) bool {
	if s.mine == nil && !s.writing && s.worker == ls.worker && s.until.After(now) {
		ls.l.w.log.Debug().Uint64("rev", s.rev).Msg("limits: slot adopted")
		s.mine = &holding{idleSince: now.Add(-idleLinger)}
		ls.signal()
		return true
	}
	return false
}

func (ls *limiter) freeSlot(ctx context.Context, key string, rev uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, kvTimeout)
	defer cancel()
	return bus.FreeLimitSlot(ctx, ls.js, key, rev)
}

// renew extends the lease of every cap slot this worker holds, every third
// of the lease, so that a slot outlives its holder by at most one lease.
func (ls *limiter) renew(ctx context.Context) {
	t := time.NewTicker(ls.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		type held struct {
			key  string
			g    *gate
			s    *slotView
			rev  uint64
			slot bus.LimitSlot
		}
		var all []held
		now := time.Now()
		ls.mu.Lock()
		for _, g := range ls.gates {
			for i, s := range g.slots {
				if s.mine == nil {
					continue
				}
				slot := bus.LimitSlot{Until: now.Add(ls.lease), Worker: ls.worker}
				if s.mine.run != nil {
					slot.JobID = jobID(s.mine.run)
				}
				all = append(all, held{g.prefix + "." + strconv.Itoa(i), g, s, s.rev, slot})
			}
		}
		ls.mu.Unlock()
		for _, h := range all {
			rev, err := ls.claimSlot(ctx, h.key, h.rev, h.slot)
			ls.mu.Lock()
			s := h.s
			h.g.touch()
			switch {
			case err == nil:
				if rev > s.rev {
					s.rev, s.until = rev, h.slot.Until
				}
			case errors.Is(err, jetstream.ErrKeyExists):
				if s.mine != nil && s.rev == h.rev {
					ls.l.w.log.Warn().Str("slot", h.key).Msg("lost a concurrency slot: another worker took it after its lease ran out")
					s.mine = nil
				}
			case ctx.Err() == nil:
				ls.l.w.log.Warn().Err(err).Str("slot", h.key).Msg("could not renew a concurrency slot's lease; trying again")
				ls.troubled()
				ls.signal()
			}
			ls.mu.Unlock()
		}
	}
}

// jobID is the ID of a run's job, for a slot's value.
func jobID(r *run) string {
	if id := r.msg.Headers().Get(bus.HeaderJobID); id != "" {
		return id
	}
	return r.msg.Headers().Get(bus.HeaderMsgID)
}

// runAdmitted runs admitted jobs: their run slot is already reserved.
func (ls *limiter) runAdmitted() {
	for r := range ls.admitted {
		r.queued.Store(false)
		if r.limitFail != "" {
			ls.l.deadLetterUnrun(r, r.limitFail)
		} else {
			ls.l.process(r)
		}
		ls.l.release(r)
	}
}

// runDeferrals releases the jobs the waiting room had no place for.
func (ls *limiter) runDeferrals() {
	for d := range ls.deferrals {
		d.r.queued.Store(false)
		if job, err := bus.ParseJob(d.r.msg); err != nil {
			ls.l.deadLetterUnrun(d.r, fmt.Sprintf("malformed job: %v", err))
		} else {
			ls.l.reschedule(d.r, job, d.after, d.why)
		}
		ls.forget(d.r)
	}
}

// forget settles the bookkeeping of a fetched job that leaves the worker
// without running (released): it held no run slot.
func (ls *limiter) forget(r *run) {
	r.slotOnce.Do(func() {
		ls.l.mu.Lock()
		ls.l.held.Add(-1)
		ls.l.mu.Unlock()
		select {
		case ls.l.finished <- struct{}{}:
		default:
		}
	})
	ls.l.mu.Lock()
	delete(ls.l.inFlight, r)
	ls.l.mu.Unlock()
	ls.l.running.Done()
}

// handBack ends admissions and releases every waiting job to run at once
// elsewhere, without using a try: the drain's step for jobs that never
// started.
func (ls *limiter) handBack() {
	if ls == nil {
		return
	}
	ls.stopPump()
	<-ls.pumped
	ls.draining.Store(true)
	ls.mu.Lock()
	var all []*waiter
	for _, q := range ls.queues {
		all = append(all, q...)
	}
	for _, wt := range all {
		ls.dequeue(wt)
	}
	ls.giveBack(context.Background(), time.Now().Add(idleLinger), func(time.Time) {})
	ls.mu.Unlock()
	for _, wt := range all {
		if wt.fail != "" {
			wt.r.queued.Store(false)
			ls.l.deadLetterUnrun(wt.r, wt.fail)
			ls.forget(wt.r)
			continue
		}
		ls.deferrals <- deferral{r: wt.r, why: "worker stopping"}
	}
}

// stop ends the limiter after the drain: the goroutines stop, and the cap
// slots this worker still holds go back to the bucket.
func (ls *limiter) stop() {
	if ls == nil {
		return
	}
	ls.stopPump()
	<-ls.pumped
	ls.stopAll()
	ls.mu.Lock()
	_ = ls.watch.Stop()
	ls.mu.Unlock()
	ls.wg.Wait()
	close(ls.admitted)
	close(ls.deferrals)
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for _, g := range ls.gates {
		for i, s := range g.slots {
			if s.mine != nil {
				_, _ = bus.FreeLimitSlot(ctx, ls.js, g.prefix+"."+strconv.Itoa(i), s.rev)
				s.mine = nil
			}
		}
	}
}

func (ls *limiter) retryAfter() time.Time {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.retryAt
}
