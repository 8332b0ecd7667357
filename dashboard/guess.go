package dashboard

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"
)

// Wrong guesses of the credentials are slowed down per client address:
// the first freeGuesses wrong ones cost nothing; each one after them locks
// the address out for twice as long as the last (1 s, 2 s, 4 s, ... up to
// maxLockout), during which every attempt, right or wrong, is answered 429
// unchecked. An address whose last wrong guess is older than forgetAfter
// starts afresh. At most maxTracked addresses are remembered.
const (
	freeGuesses  = 5
	firstLockout = time.Second
	maxLockout   = 15 * time.Minute
	forgetAfter  = 15 * time.Minute
	maxTracked   = 10_000
)

// MinSecretLen is the shortest token or password the dashboard accepts: a
// shorter one could be guessed even at the rate wrong guesses are allowed.
const MinSecretLen = 16

// guesses tracks the wrong guesses of each client address. It is safe for
// concurrent use.
type guesses struct {
	mu    sync.Mutex
	now   func() time.Time
	addrs map[netip.Addr]*guessState
}

// guessState is one address's record.
type guessState struct {
	wrong  int       // wrong guesses since it was last forgotten
	last   time.Time // the last wrong guess
	locked time.Time // no attempt is checked before this
}

func newGuesses(now func() time.Time) *guesses {
	return &guesses{now: now, addrs: map[netip.Addr]*guessState{}}
}

// clientKey is the address whose guesses count together: an IPv4
// address, or the /64 network of an IPv6 one (one host commonly holds a
// whole /64). The zero Addr when RemoteAddr does not parse.
func clientKey(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	a = a.Unmap().WithZone("")
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// lockedFor is how long addr must still wait before an attempt is
// checked; 0 when it may try now.
func (g *guesses) lockedFor(addr netip.Addr) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	st, ok := g.addrs[addr]
	if !ok {
		return 0
	}
	return max(st.locked.Sub(g.now()), 0)
}

// wrong records a wrong guess from addr and returns the lockout it now
// serves (0 while it is within its free guesses).
func (g *guesses) wrong(addr netip.Addr) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	st, ok := g.addrs[addr]
	if ok && now.Sub(st.last) > forgetAfter && !now.Before(st.locked) {
		st.wrong = 0
	}
	if !ok {
		g.makeRoom(now)
		st = &guessState{}
		g.addrs[addr] = st
	}
	st.wrong++
	st.last = now
	extra := st.wrong - freeGuesses
	if extra <= 0 {
		return 0
	}
	lockout := maxLockout
	if extra <= 20 { // 2^20 s is far past maxLockout
		lockout = min(firstLockout<<(extra-1), maxLockout)
	}
	st.locked = now.Add(lockout)
	return lockout
}

// right forgets addr's wrong guesses after a successful login.
func (g *guesses) right(addr netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.addrs, addr)
}

// makeRoom drops the records that are forgotten anyway, and when none
// is, the one whose last wrong guess is oldest, so that at most
// maxTracked addresses are held. Called with mu held.
func (g *guesses) makeRoom(now time.Time) {
	if len(g.addrs) < maxTracked {
		return
	}
	var oldest netip.Addr
	var oldestAt time.Time
	for a, st := range g.addrs {
		if now.Sub(st.last) > forgetAfter && !now.Before(st.locked) {
			delete(g.addrs, a)
			continue
		}
		if oldestAt.IsZero() || st.last.Before(oldestAt) {
			oldest, oldestAt = a, st.last
		}
	}
	if len(g.addrs) >= maxTracked {
		delete(g.addrs, oldest)
	}
}
