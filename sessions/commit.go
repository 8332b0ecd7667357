package sessions

import (
	"context"
	"fmt"
	"time"
)

// commit saves the request's session and says what to do with the cookie.
// It runs once, just before the response header is written.
func (st *state) commit(ctx context.Context) (cookieAction, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.committed = true
	if st.detached {
		return cookieAction{}, nil
	}
	switch {
	case st.mode == modeDestroyed:
		return st.commitDestroyed(ctx)
	case st.loadedKey == "":
		return st.commitNew(ctx)
	case st.mode == modeRenewed:
		return st.commitRenewed(ctx)
	}
	return st.commitExisting(ctx)
}

// cookieAction is what the middleware does with the cookies.
type cookieAction struct {
	token   string    // set the session cookie to token
	expires time.Time // the session's absolute deadline
	clear   bool      // expire both cookies
	// rev, when not "", is the revision cookie's new value.
	rev string
}

// withRev sets the revision cookie for key at rev, when the client has not
// seen it yet.
func (st *state) withRev(act cookieAction, key string, rev uint64, rec *record) cookieAction {
	if rev != 0 && rev != st.known.rev {
		act.rev = formatSeen(key, rev, rec.idleDeadline)
		act.expires = rec.absDeadline
	}
	return act
}

func (st *state) touch(rec *record) {
	now := st.m.now()
	rec.touched = now
	rec.idleDeadline = now.Add(st.m.cfg.IdleTimeout)
	if rec.idleDeadline.After(rec.absDeadline) {
		rec.idleDeadline = rec.absDeadline
	}
}

// refreshDue reports whether a read-only request should write rec again to
// push its idle deadline: only once RefreshFraction of the idle window has
// passed since the last write.
func (st *state) refreshDue(rec *record) bool {
	window := time.Duration(float64(st.m.cfg.IdleTimeout) * st.m.cfg.RefreshFraction)
	return st.m.now().Sub(rec.touched) >= window
}

// commitNew stores a session the request created, if it put anything in it.
func (st *state) commitNew(ctx context.Context) (cookieAction, error) {
	if !st.dirty() {
		return cookieAction{}, nil
	}
	if st.token == "" {
		st.token = newToken()
	}
	rec := st.merged(st.base)
	st.touch(rec)
	key := storageKey(st.token)
	rev, err := st.m.write(ctx, key, rec, 0)
	if err != nil {
		return cookieAction{}, err
	}
	return st.withRev(cookieAction{token: st.token, expires: rec.absDeadline}, key, rev, rec), nil
}

// commitExisting saves changes (or an idle refresh) to the loaded session
// with optimistic concurrency: on a revision conflict it reloads, replays
// this request's changes onto the fresh record and tries again. A session
// deleted meanwhile stays deleted.
func (st *state) commitExisting(ctx context.Context) (cookieAction, error) {
	if !st.dirty() && !st.refreshDue(st.base) {
		return st.withRev(cookieAction{}, st.loadedKey, st.loadedRev, st.base), nil
	}
	src, rev := st.base, st.loadedRev
	for attempt := 0; ; attempt++ {
		rec := st.merged(src)
		st.touch(rec)
		newRev, err := st.m.write(ctx, st.loadedKey, rec, rev)
		if err == nil {
			return st.withRev(cookieAction{}, st.loadedKey, newRev, rec), nil
		}
		if !isConflict(err) {
			return cookieAction{}, err
		}
		if attempt == st.m.cfg.MaxRetries {
			return cookieAction{}, fmt.Errorf("%w: %d attempts", ErrConflict, attempt+1)
		}
		if src, rev, err = st.m.load(ctx, st.loadedKey, seen{rev: rev + 1}); err != nil {
			return cookieAction{}, err
		}
		if src == nil {
			return cookieAction{}, ErrSessionGone
		}
		if !st.dirty() && !st.refreshDue(src) { // a concurrent write already refreshed it
			return st.withRev(cookieAction{}, st.loadedKey, rev, src), nil
		}
	}
}

// commitRenewed moves the session to its new token: it writes the new key,
// then deletes the old one only if nothing changed it since it was read.
// If something did, the fresh old record is merged into the new key and the
// delete retried, so a concurrent save to the old token is not lost.
func (st *state) commitRenewed(ctx context.Context) (cookieAction, error) {
	newKey := storageKey(st.token)
	src, oldRev, newRev := st.base, st.loadedRev, uint64(0)
	for attempt := 0; ; attempt++ {
		rec := st.merged(src)
		st.touch(rec)
		var err error
		if newRev, err = st.m.write(ctx, newKey, rec, newRev); err != nil {
			return cookieAction{}, err
		}
		err = st.m.remove(ctx, st.loadedKey, oldRev)
		if err == nil {
			return st.withRev(cookieAction{token: st.token, expires: rec.absDeadline}, newKey, newRev, rec), nil
		}
		if !isConflict(err) {
			return cookieAction{}, err
		}
		if attempt == st.m.cfg.MaxRetries {
			return cookieAction{}, fmt.Errorf("%w: %d attempts", ErrConflict, attempt+1)
		}
		if src, oldRev, err = st.m.load(ctx, st.loadedKey, seen{rev: oldRev + 1}); err != nil {
			return cookieAction{}, err
		}
		if src == nil { // destroyed meanwhile: the renewed copy must go too
			_ = st.m.remove(ctx, newKey, 0)
			return cookieAction{}, ErrSessionGone
		}
	}
}

// commitDestroyed deletes the loaded session unconditionally, then saves a
// fresh session if the request put values after Destroy.
func (st *state) commitDestroyed(ctx context.Context) (cookieAction, error) {
	if st.loadedKey != "" {
		if err := st.m.remove(ctx, st.loadedKey, 0); err != nil {
			return cookieAction{}, err
		}
	}
	if len(st.changes) > 0 || st.csrfChanged {
		return st.commitNew(ctx)
	}
	return cookieAction{clear: st.hadCookie}, nil
}
