package catalog

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// TestBudgetWaitsInTurn: work that does not fit waits, first come first
// served (a large request is not overtaken by smaller ones), until bytes
// are released; a waiter whose context ends leaves the queue and lets
// those behind it in.
func TestBudgetWaitsInTurn(t *testing.T) {
	b := newMemoryBudget(100)
	ctx := context.Background()
	if err := b.acquire(ctx, 60); err != nil {
		t.Fatal(err)
	}
	big := acquireAsync(b, ctx, 70)
	waitWaiters(t, b, 1)
	small := acquireAsync(b, ctx, 10)
	waitWaiters(t, b, 2)
	if b.tryAcquire(10) {
		t.Fatal("tryAcquire took bytes while others wait for them")
	}
	cctx, cancel := context.WithCancel(ctx)
	gone := acquireAsync(b, cctx, 30)
	waitWaiters(t, b, 3)
	select {
	case err := <-big:
		t.Fatalf("70 bytes granted with 60 of 100 held (%v)", err)
	case err := <-small:
		t.Fatalf("10 bytes granted ahead of the 70 asked before (%v)", err)
	default:
	}
	b.release(60) // 70, then 10, fit; 30 more would not
	if err := <-big; err != nil {
		t.Fatal(err)
	}
	if err := <-small; err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-gone; err != context.Canceled {
		t.Fatalf("the cancelled waiter got %v", err)
	}
	waitWaiters(t, b, 0)
	if !b.tryAcquire(20) || b.tryAcquire(1) {
		t.Fatalf("after the cancelled waiter left, 80 of 100 should be held and 20 free: used %d", b.used)
	}
}

func acquireAsync(b *memoryBudget, ctx context.Context, n int64) <-chan error {
	done := make(chan error, 1)
	go func() { done <- b.acquire(ctx, n) }()
	return done
}

// waitWaiters waits until n requests wait for the budget.
func waitWaiters(t *testing.T, b *memoryBudget, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b.mu.Lock()
		got := b.waiters.Len()
		b.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d waiters, want %d", got, n)
		}
		runtime.Gosched()
	}
}
