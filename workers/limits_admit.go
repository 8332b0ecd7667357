package workers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
)

// Admitting waiting jobs (limits.go): the waiting room, oldest first per
// queue and queues by priority, and the compare-and-set claims that take
// a job's slots.

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
		job, err := bus.ParseJob(d.r.msg)
		switch {
		case err != nil:
			ls.l.deadLetterUnrun(d.r, fmt.Sprintf("malformed job: %v", err))
		case ls.l.status.cancelledBefore(job): // stored again, it would run: its original is purged
			d.r.log.Info().Msg("job cancelled while it waited for its limit")
			ls.l.removeCancelled(d.r, job)
		default:
			ls.l.reschedule(d.r, job, d.after, d.why)
		}
		ls.forget(d.r)
	}
}
