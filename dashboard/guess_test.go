package dashboard

import (
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// TestLockoutDoublesExpiresAndIsForgotten: past the free guesses each
// wrong one doubles the lockout up to maxLockout; a lockout ends when its
// time has passed; a right login forgets the address; a quiet address is
// forgotten after forgetAfter; other addresses are not affected.
func TestLockoutDoublesExpiresAndIsForgotten(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_900_000_000, 0)}
	g := newGuesses(clock.now)
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	for range freeGuesses {
		if lock := g.wrong(a); lock != 0 {
			t.Fatalf("a free guess locked the address for %s", lock)
		}
	}
	want := firstLockout
	for range 15 {
		if lock := g.wrong(a); lock != want {
			t.Fatalf("lockout %s, want %s", lock, want)
		}
		want = min(2*want, maxLockout)
	}
	if g.lockedFor(a) != maxLockout || g.lockedFor(b) != 0 {
		t.Fatalf("locked for %s and %s, want %s and 0", g.lockedFor(a), g.lockedFor(b), maxLockout)
	}
	clock.t = clock.t.Add(maxLockout)
	if g.lockedFor(a) != 0 {
		t.Fatal("the lockout did not end")
	}
	if lock := g.wrong(a); lock != maxLockout {
		t.Fatalf("a wrong guess right after the lockout: %s, want %s", lock, maxLockout)
	}
	g.right(a)
	if lock := g.wrong(a); lock != 0 {
		t.Fatalf("after a right login: %s, want a free guess", lock)
	}
	for range freeGuesses {
		g.wrong(b)
	}
	clock.t = clock.t.Add(forgetAfter + time.Second)
	if lock := g.wrong(b); lock != 0 {
		t.Fatalf("after %s of quiet: %s, want a free guess", forgetAfter, lock)
	}
}

// TestGuessesHoldABoundedNumberOfAddresses: however many addresses guess,
// at most maxTracked are remembered.
func TestGuessesHoldABoundedNumberOfAddresses(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_900_000_000, 0)}
	g := newGuesses(clock.now)
	base := netip.MustParseAddr("10.0.0.0")
	for range maxTracked + 500 {
		base = base.Next()
		g.wrong(base)
		clock.t = clock.t.Add(time.Millisecond)
	}
	if n := len(g.addrs); n > maxTracked {
		t.Fatalf("%d addresses remembered, want at most %d", n, maxTracked)
	}
}

// TestClientKeyGroupsIPv6By64: the addresses of one IPv6 /64 count as one
// client; IPv4 addresses (also mapped into IPv6) are their own.
func TestClientKeyGroupsIPv6By64(t *testing.T) {
	key := func(remote string) string {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = remote
		return clientKey(r).String()
	}
	if a, b := key("[2001:db8:1:2::1]:5000"), key("[2001:db8:1:2:ffff::9]:6000"); a != b || a != "2001:db8:1:2::" {
		t.Errorf("one /64: %s and %s", a, b)
	}
	if a, b := key("192.0.2.1:1"), key("[::ffff:192.0.2.1]:2"); a != b || a != "192.0.2.1" {
		t.Errorf("IPv4 and its mapped form: %s and %s", a, b)
	}
}
