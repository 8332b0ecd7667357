package sessions

import (
	"context"
	"slices"
	"sync"
	"time"
)

// mode says what the request did to the session's identity.
type mode uint8

const (
	modeKeep      mode = iota // same token
	modeRenewed               // RenewToken: same data under a new token
	modeDestroyed             // Destroy: old session deleted; a fresh one starts
)

// changeOp is one per-key change a request made. At save time the changes
// are replayed onto the freshest stored record, so concurrent requests that
// change different keys never lose each other's writes.
type changeOp uint8

const (
	opSet      changeOp = iota + 1
	opDelete            // delete whatever is stored
	opDeleteIf          // delete only if the stored entry is still e (Pop, flash ageing)
)

type change struct {
	op changeOp
	e  entry
}

func apply(rec *record, changes map[string]change) {
	for k, c := range changes {
		switch c.op {
		case opSet:
			rec.values[k] = c.e
		case opDelete:
			delete(rec.values, k)
		case opDeleteIf:
			if cur, ok := rec.values[k]; ok && cur.equal(c.e) {
				delete(rec.values, k)
			}
		}
	}
}

// state is one request's session: what was loaded, what the handler sees
// and what it changed.
type state struct {
	mu sync.Mutex
	m  *Manager

	hadCookie bool
	loadedKey string  // KV key of the session the request brought; "" if none
	loadedRev uint64  // its revision
	known     seen    // what the client had seen of it (the revision cookie)
	base      *record // the record as loaded (an empty one when none)

	token       string  // the session's token; "" until a new session is saved
	view        *record // what the handler reads: base with this request's changes
	changes     map[string]change
	csrfChanged bool
	mode        mode
	committed   bool
	detached    bool // FailOpen after a failed load: never saved
}

func (m *Manager) newState(hadCookie bool) *state {
	base := m.emptyRecord()
	return &state{m: m, hadCookie: hadCookie, base: base, view: base.clone(), changes: map[string]change{}}
}

func (m *Manager) loadedState(token, key string, rec *record, rev uint64, known seen) *state {
	st := &state{m: m, hadCookie: true, loadedKey: key, loadedRev: rev, known: known, base: rec, token: token,
		view: rec.clone(), changes: map[string]change{}}
	for k, e := range rec.values {
		if e.flash { // flashed by the previous request: readable now, gone after
			st.changes[k] = change{op: opDeleteIf, e: e}
		}
	}
	return st
}

func (m *Manager) emptyRecord() *record {
	now := m.now()
	return &record{created: now, touched: now, absDeadline: now.Add(m.cfg.AbsoluteTimeout),
		idleDeadline: now.Add(m.cfg.IdleTimeout), values: map[string]entry{}}
}

// merged is src with this request's changes replayed onto it.
func (st *state) merged(src *record) *record {
	rec := src.clone()
	apply(rec, st.changes)
	if st.csrfChanged {
		rec.csrf = st.view.csrf
	}
	return rec
}

func (st *state) dirty() bool {
	return len(st.changes) > 0 || st.csrfChanged || st.mode != modeKeep
}

// writable reports why the session can no longer change, if it cannot.
func (st *state) writable() error {
	switch {
	case st.committed:
		return ErrCommitted
	case st.detached:
		return ErrUnavailable
	}
	return nil
}

type ctxKey struct{}

func from(ctx context.Context) (*state, error) {
	st, ok := ctx.Value(ctxKey{}).(*state)
	if !ok {
		return nil, ErrNoSession
	}
	return st, nil
}

// Put stores val under key. val is a string, bool, any int, uint, float or
// complex kind, []byte, time.Time, time.Duration, or a type registered with
// Register; anything else is ErrUnsupportedType. When two concurrent
// requests set the same key, the one that saves last wins.
func Put(ctx context.Context, key string, val any) error { return set(ctx, key, val, false) }

// Flash stores val under key for this request and the next one only, like
// Laravel's session()->flash: the request after it can read it (Pop or
// Get), and it is gone after that request whether read or not.
func Flash(ctx context.Context, key string, val any) error { return set(ctx, key, val, true) }

func set(ctx context.Context, key string, val any, flash bool) error {
	st, err := from(ctx)
	if err != nil {
		return err
	}
	e, err := st.m.types.encode(val)
	if err != nil {
		return err
	}
	e.flash = flash
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.writable(); err != nil {
		return err
	}
	st.view.values[key] = e
	if stored, ok := st.base.values[key]; ok && stored.equal(e) {
		// The session already holds exactly this: nothing to write (and
		// a flash put again is kept for the next request, as stored).
		delete(st.changes, key)
		return nil
	}
	st.changes[key] = change{op: opSet, e: e}
	return nil
}

// Get returns the value stored under key, with the exact type it was put
// with. ok is false when the key is absent, there is no session, or the
// value's registered type is unknown to this process.
func Get(ctx context.Context, key string) (val any, ok bool) {
	st, err := from(ctx)
	if err != nil {
		return nil, false
	}
	st.mu.Lock()
	e, found := st.view.values[key]
	st.mu.Unlock()
	if !found {
		return nil, false
	}
	v, err := st.m.types.decode(e)
	return v, err == nil
}

// GetAs returns the value under key when it is a T.
func GetAs[T any](ctx context.Context, key string) (T, bool) {
	v, ok := Get(ctx, key)
	t, isT := v.(T)
	return t, ok && isT
}

// GetString returns the string under key.
func GetString(ctx context.Context, key string) (string, bool) { return GetAs[string](ctx, key) }

// GetInt returns the int under key.
func GetInt(ctx context.Context, key string) (int, bool) { return GetAs[int](ctx, key) }

// GetInt64 returns the int64 under key.
func GetInt64(ctx context.Context, key string) (int64, bool) { return GetAs[int64](ctx, key) }

// GetFloat64 returns the float64 under key.
func GetFloat64(ctx context.Context, key string) (float64, bool) { return GetAs[float64](ctx, key) }

// GetBool returns the bool under key.
func GetBool(ctx context.Context, key string) (bool, bool) { return GetAs[bool](ctx, key) }

// GetTime returns the time.Time under key.
func GetTime(ctx context.Context, key string) (time.Time, bool) { return GetAs[time.Time](ctx, key) }

// GetDuration returns the time.Duration under key.
func GetDuration(ctx context.Context, key string) (time.Duration, bool) {
	return GetAs[time.Duration](ctx, key)
}

// GetBytes returns the []byte under key.
func GetBytes(ctx context.Context, key string) ([]byte, bool) { return GetAs[[]byte](ctx, key) }

// Has reports whether key is set.
func Has(ctx context.Context, key string) bool {
	_, ok := Get(ctx, key)
	return ok
}

// Keys returns the session's keys, sorted.
func Keys(ctx context.Context) []string {
	st, err := from(ctx)
	if err != nil {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	keys := make([]string, 0, len(st.view.values))
	for k := range st.view.values {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Remove deletes key. Against a concurrent Put of the same key, the request
// that saves last wins.
func Remove(ctx context.Context, key string) error {
	st, err := from(ctx)
	if err != nil {
		return err
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.writable(); err != nil {
		return err
	}
	if _, ok := st.view.values[key]; ok {
		delete(st.view.values, key)
		st.changes[key] = change{op: opDelete}
	}
	return nil
}

// Clear removes every key; the token and CSRF token stay.
func Clear(ctx context.Context) error {
	for _, k := range Keys(ctx) {
		if err := Remove(ctx, k); err != nil {
			return err
		}
	}
	return nil
}

// Pop returns the value under key and removes it; nil when absent. The
// removal applies only to the value this request read: a value that a
// concurrent request put in the meantime is kept. Two concurrent requests
// may both pop the same value.
func Pop(ctx context.Context, key string) any {
	st, err := from(ctx)
	if err != nil {
		return nil
	}
	v, ok := Get(ctx, key)
	if !ok {
		return nil
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.writable() != nil {
		return nil
	}
	delete(st.view.values, key)
	if orig, loaded := st.base.values[key]; loaded {
		st.changes[key] = change{op: opDeleteIf, e: orig}
	} else {
		delete(st.changes, key) // put by this request only: nothing stored to remove
	}
	return v
}

// PopString is Pop for a string value; "" when absent or not a string.
func PopString(ctx context.Context, key string) string {
	s, _ := Pop(ctx, key).(string)
	return s
}
