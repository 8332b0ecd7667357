package workers

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
)

// The slots this worker holds (limits.go): given back when a job is done
// or idle too long, renewed while held, handed back on a drain.

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
