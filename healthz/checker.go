package healthz

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// published is one result of a check, immutable once published.
type published struct {
	res CheckResult
	at  time.Time
}

// checker caches one check's result and runs the check at most once at a
// time.
type checker struct {
	Check // with defaults applied

	pub     atomic.Pointer[published] // the last published result; nil: none yet
	overdue atomic.Bool               // the last run timed out and its Run has not returned

	mu           sync.Mutex
	wait         chan struct{} // non-nil while a run's result is pending; closed on publication
	failingSince time.Time     // when the current run of failures began; zero after a success
}

// fresh reports whether p can be served at now: it is younger than
// cacheFor, or the run after it cannot start yet because the run that
// produced it (a timeout) is still going.
func (c *checker) fresh(p *published, now time.Time, cacheFor time.Duration) bool {
	return p != nil && (now.Sub(p.at) < cacheFor || c.overdue.Load())
}

// result returns a fresh result, joining the run in flight or starting one.
// It waits at most for the run's timeout, or until ctx ends.
func (c *checker) result(ctx context.Context, cacheFor time.Duration) *published {
	c.mu.Lock()
	if p := c.pub.Load(); c.fresh(p, time.Now(), cacheFor) {
		c.mu.Unlock()
		return p
	}
	wait := c.wait
	if wait == nil {
		wait = c.startLocked()
	}
	c.mu.Unlock()
	select {
	case <-wait:
		return c.pub.Load()
	case <-ctx.Done():
		return &published{res: c.classify(fmt.Errorf("probe stopped waiting: %w", ctx.Err()), 0), at: time.Now()}
	}
}

func (c *checker) startLocked() chan struct{} {
	done := make(chan struct{})
	c.wait = done
	go c.run(done)
	return done
}

// run calls Run once. The result is published when Run returns or when its
// timeout passes, whichever comes first.
func (c *checker) run(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	defer cancel()
	began := time.Now()
	stop := context.AfterFunc(ctx, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.publishLocked(done, c.timedOut(ctx, nil), c.Timeout) {
			c.overdue.Store(true)
		}
	})
	err := call(ctx, c.Run)
	stop()
	if err != nil && ctx.Err() != nil {
		err = c.timedOut(ctx, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.overdue.Store(false)
	c.publishLocked(done, err, time.Since(began))
}

func (c *checker) timedOut(ctx context.Context, err error) error {
	if err != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("timed out after %s: %w (%w)", c.Timeout, ctx.Err(), err)
	}
	return fmt.Errorf("timed out after %s: %w", c.Timeout, ctx.Err())
}

// publishLocked records the outcome of the run that owns done, unless that
// run's result was already published; it reports whether it published.
func (c *checker) publishLocked(done chan struct{}, err error, took time.Duration) bool {
	if c.wait != done {
		return false
	}
	now := time.Now()
	res := c.classify(err, took)
	switch {
	case err == nil:
		c.failingSince = time.Time{}
	case c.failingSince.IsZero():
		c.failingSince = now
	}
	if failing := now.Sub(c.failingSince); res.Status == CheckDown && failing < c.DownAfter {
		res.Status = CheckDegraded
		res.Error += fmt.Sprintf(" (failing for %s: down after %s)", failing.Round(time.Millisecond), c.DownAfter)
	}
	c.pub.Store(&published{res: res, at: now})
	c.wait = nil
	close(done)
	return true
}

func (c *checker) classify(err error, took time.Duration) CheckResult {
	r := CheckResult{Status: CheckOK, TookMS: float64(took.Microseconds()) / 1000, Critical: c.Critical}
	if err == nil {
		return r
	}
	r.Error = err.Error()
	if c.Critical && !errors.Is(err, ErrDegraded) {
		r.Status = CheckDown
	} else {
		r.Status = CheckDegraded
	}
	return r
}

// call runs fn, turning a panic into an error.
func call(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("check panicked: %v", p)
		}
	}()
	return fn(ctx)
}
