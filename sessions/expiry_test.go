package sessions_test

import (
	"context"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/sessions"
)

func alive(t testing.TB, e *env, c *client) bool {
	t.Helper()
	var ok bool
	c.run(e.sm, func(ctx context.Context) { ok = sessions.Has(ctx, "user_id") })
	return ok
}

func login(t testing.TB, e *env) *client {
	t.Helper()
	c := newClient()
	c.run(e.sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "user_id", 1)) })
	return c
}

func TestIdleTimeoutSlidesWithActivityAndEndsInactiveSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{IdleTimeout: 10 * time.Minute})
	c := login(t, e)
	e.clock.Advance(6 * time.Minute)
	if !alive(t, e, c) {
		t.Fatal("session gone after 6 of 10 idle minutes")
	}
	e.clock.Advance(6 * time.Minute) // 12 minutes old, 6 idle
	if !alive(t, e, c) {
		t.Fatal("session gone although a request came 6 minutes ago: the idle deadline did not slide")
	}
	e.clock.Advance(10 * time.Minute)
	if alive(t, e, c) {
		t.Fatal("session alive after 10 idle minutes")
	}
}

func TestIdleTimeoutIsNeverLaterThanConfigured(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{IdleTimeout: 10 * time.Minute})
	c := login(t, e)
	// Requests inside the throttle window do not push the deadline, so the
	// session ends 10 minutes after its last write at the latest.
	for range 5 {
		e.clock.Advance(10 * time.Second)
		if !alive(t, e, c) {
			t.Fatal("session ended early")
		}
	}
	e.clock.Advance(10*time.Minute - 50*time.Second)
	if alive(t, e, c) {
		t.Fatal("session outlived its idle deadline")
	}
}

func TestAbsoluteTimeoutEndsEvenAnActiveSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{IdleTimeout: 10 * time.Minute, AbsoluteTimeout: 30 * time.Minute})
	c := login(t, e)
	for range 5 { // a request every 5 minutes up to minute 25
		e.clock.Advance(5 * time.Minute)
		if !alive(t, e, c) {
			t.Fatalf("active session ended before its absolute deadline")
		}
	}
	e.clock.Advance(4*time.Minute + 59*time.Second)
	if !alive(t, e, c) {
		t.Fatal("session ended a second before its absolute deadline")
	}
	e.clock.Advance(time.Second)
	if alive(t, e, c) {
		t.Fatal("active session outlived its absolute deadline")
	}
}

func TestReadOnlyRequestsInsideTheThrottleWindowDoNotWrite(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{IdleTimeout: 10 * time.Minute}) // window: a tenth, 1 minute
	c := login(t, e)
	before := e.lastSeq()
	for range 59 {
		e.clock.Advance(time.Second)
		if !alive(t, e, c) {
			t.Fatal("session lost")
		}
	}
	if writes := e.lastSeq() - before; writes != 0 {
		t.Fatalf("59 read-only requests within the window wrote %d times, want 0", writes)
	}
	e.clock.Advance(time.Second) // one minute since the last write
	for range 20 {
		if !alive(t, e, c) {
			t.Fatal("session lost")
		}
	}
	if writes := e.lastSeq() - before; writes != 1 {
		t.Fatalf("21 read-only requests once the window passed wrote %d times, want exactly 1 refresh", writes)
	}
}

func TestExpiredSessionsLeaveTheBucketWithoutASweeper(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{IdleTimeout: time.Second, Now: time.Now})
	login(t, e)
	if n := len(e.keys()); n != 1 {
		t.Fatalf("keys after login = %d, want 1", n)
	}
	status, err := e.kv().Status(context.Background())
	must(t, err)
	if status.TTL() != time.Second {
		t.Errorf("bucket TTL = %s, want the idle timeout (1s)", status.TTL())
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(e.keys()) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the expired session is still in the bucket after 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
