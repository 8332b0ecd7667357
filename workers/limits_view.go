package workers

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
)

// The limiter's view of the slot keys (limits.go): one gate per limit and
// key, filled and kept current by a KV watch, read again when it may have
// gone stale.

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
