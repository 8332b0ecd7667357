package catalog

import (
	"container/list"
	"context"
	"sync"
)

// memoryBudget is a weighted semaphore of bytes, shared by every image job
// of a worker process: a job takes what its image will hold before it
// allocates, and waits, first come first served, while other jobs hold the
// rest. A job never waits while holding part of the budget (see
// loadOriginal), so jobs cannot deadlock each other.
type memoryBudget struct {
	size    int64
	mu      sync.Mutex
	used    int64
	waiters list.List // of *budgetWaiter, oldest first
}

type budgetWaiter struct {
	n     int64
	ready chan struct{} // closed once the bytes are the waiter's
}

func newMemoryBudget(size int64) *memoryBudget { return &memoryBudget{size: size} }

// acquire takes n bytes, waiting until they are free or ctx ends. n must
// not exceed the budget's size: the caller refuses such work instead.
func (b *memoryBudget) acquire(ctx context.Context, n int64) error {
	b.mu.Lock()
	if b.used+n <= b.size && b.waiters.Len() == 0 {
		b.used += n
		b.mu.Unlock()
		return nil
	}
	w := &budgetWaiter{n: n, ready: make(chan struct{})}
	elem := b.waiters.PushBack(w)
	b.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case <-w.ready: // granted as ctx ended: give the bytes back
		b.used -= n
	default:
		b.waiters.Remove(elem)
	}
	b.grantLocked() // those behind may fit now
	return ctx.Err()
}

// tryAcquire takes n bytes if they are free now and no one waits.
func (b *memoryBudget) tryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.size || b.waiters.Len() > 0 {
		return false
	}
	b.used += n
	return true
}

// release gives back n bytes taken before.
func (b *memoryBudget) release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	b.grantLocked()
}

// grantLocked hands free bytes to the waiters in order, stopping at the
// first that does not fit, so a large job is not starved by small ones.
func (b *memoryBudget) grantLocked() {
	for e := b.waiters.Front(); e != nil; e = b.waiters.Front() {
		w := e.Value.(*budgetWaiter)
		if b.used+w.n > b.size {
			return
		}
		b.used += w.n
		b.waiters.Remove(e)
		close(w.ready)
	}
}
