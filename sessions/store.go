package sessions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/jetfleet/jetfleet/leaderless"
)

// load returns the live record stored under key, or nil when there is none:
// never issued, destroyed, expired, or unreadable. Only failures to reach
// the store are errors.
//
// known is the revision of the session the client has seen (its revision
// cookie; 0 when it has none). A copy older than known is never used: the
// node's local copy first, then a direct get (any replica), then a get
// from the stream leader, which has applied every write it acknowledged.
// A leader that answers older than known is a deposed leader still
// answering: load asks again until StoreTimeout rather than serve it.
func (m *Manager) load(ctx context.Context, key string, known seen) (rec *record, rev uint64, err error) {
	ctx, span := m.startSpan(ctx, "load")
	defer func() { span.found(rec != nil); span.end(err) }()
	if m.connected() == nil {
		if e, ok := m.copy.get(key, known.rev); ok {
			span.fromCopy()
			m.observe(EventLoad)
			return m.live(e.record()), e.rev, nil
		}
	}
	known.rev = max(known.rev, m.copy.floor(key))
	s, err := m.fetch(ctx, key, known)
	if err != nil {
		m.observe(EventStoreError)
		return nil, 0, fmt.Errorf("%w: load session: %w", ErrUnavailable, err)
	}
	m.observe(EventLoad)
	if !s.found {
		m.copy.forget(key) // the copy may still hold what the bucket's limits removed
		return nil, 0, nil
	}
	m.copy.learn(key, s.value, s.rev)
	rec, derr := decodeRecord(s.value)
	if derr != nil {
		return nil, 0, nil
	}
	return m.live(rec), s.rev, nil
}

// live is rec, or nil when it is missing or expired.
func (m *Manager) live(rec *record) *record {
	if rec == nil || rec.expired(m.now()) {
		return nil
	}
	return rec
}

// errStaleLeader reports a leader that answered older than the client's
// revision: see load.
var errStaleLeader = errors.New("the stream leader answered an older revision than the client has seen")

// fetch reads key from NATS: a direct get when the client's revision allows
// it, else (or when the replica that answered is behind) a leader get.
func (m *Manager) fetch(ctx context.Context, key string, known seen) (stored, error) {
	var s stored
	err := m.untilAnswered(ctx, func(ctx context.Context) (err error) {
		s, err = m.wire.direct(ctx, key)
		return err
	})
	switch {
	case err != nil:
		return stored{}, err
	case s.found && s.rev >= known.rev:
		return s, nil
	}
	// Not found on a replica that may lack the key yet, or older than
	// the client has seen: ask the leader.
	if known.rev > 0 {
		m.observe(EventStaleCopy)
	}
	return m.fetchLeader(ctx, key, known)
}

// fetchLeader reads key from the stream leader, asking again while the
// answer is older than known: a value at an older revision, or no trace of
// the key (not even a delete marker) before the idle deadline the client
// was given — unless the stream no longer holds the client's revision
// (removedByLimits), twice in a row: the server answers "no message" for
// any error reading its store, so one such answer is not proof.
func (m *Manager) fetchLeader(ctx context.Context, key string, known seen) (stored, error) {
	var s stored
	suspected := false
	err := m.untilAnswered(ctx, func(ctx context.Context) (err error) {
		s, err = m.wire.leader(ctx, key)
		if err != nil || !known.newerThan(s, m.now()) {
			return err
		}
		if s.rev == 0 {
			gone, err := m.removedByLimits(ctx, known)
			switch {
			case err != nil:
				return err
			case gone && suspected:
				m.observe(EventEvicted)
				return nil
			case gone:
				suspected = true
				return fmt.Errorf("%w (no trace of revision %d, the stream starts after it: asking again to be sure)", errStaleLeader, known.rev)
			}
		}
		suspected = false
		return fmt.Errorf("%w (revision %d, client has seen %d)", errStaleLeader, s.rev, known.rev)
	})
	return s, err
}

// removedByLimits reports whether the client's revision can no longer be
// in the leader's stream: the stream starts after it (the bucket's byte
// bound removes the sessions written least recently, before their idle
// deadline), or the stream was created after the client was given it
// (the bucket was deleted and made again, taking every session with it:
// the revision was issued at its idle deadline less IdleTimeout). A
// deposed leader that has not applied the revision cannot start after it
// and has the same creation time, so its answer is still not believed.
func (m *Manager) removedByLimits(ctx context.Context, known seen) (bool, error) {
	st, err := m.wire.start(ctx)
	if err != nil {
		return false, err
	}
	issued := known.deadline.Add(-m.cfg.IdleTimeout)
	return st.first > known.rev || st.created.After(issued.Add(clockSkew)), nil
}

// clockSkew is how far the clocks of the node that issued a revision
// cookie and of the NATS server may disagree (the cookie's deadline is in
// whole seconds too).
const clockSkew = 5 * time.Second

// write stores rec under key if the key is still at revision rev (0: the
// key must not exist). It reports a conflict as jetstream.ErrKeyRevisionMismatch.
func (m *Manager) write(ctx context.Context, key string, rec *record, rev uint64) (_ uint64, err error) {
	ctx, span := m.startSpan(ctx, "save")
	defer func() { span.end(err) }()
	data := rec.encode()
	var newRev uint64
	// One ID for every try of this write: a try whose answer was lost (a
	// slow or cut route) may have been stored, and storing it again after
	// another request's write would bring this request's older change
	// back over it.
	id := nuid.Next()
	err = m.untilAnswered(ctx, func(ctx context.Context) (err error) {
		newRev, err = m.wire.update(ctx, key, data, rev, id)
		return err
	})
	switch {
	case err == nil:
		m.observe(EventSave)
		m.copy.learn(key, data, newRev)
		return newRev, nil
	case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		m.observe(EventConflict)
		return 0, err
	}
	m.observe(EventStoreError)
	if errors.Is(err, nats.ErrMaxPayload) {
		return 0, fmt.Errorf("%w: the session record is %d bytes (%d keys) and the NATS server's max_payload is %d bytes; store less in the session",
			ErrTooLarge, len(data), len(rec.values), m.nc.MaxPayload())
	}
	return 0, fmt.Errorf("%w: save session: %w", ErrUnavailable, err)
}

// remove deletes key; with rev > 0 only if the key is still at rev.
func (m *Manager) remove(ctx context.Context, key string, rev uint64) (err error) {
	ctx, span := m.startSpan(ctx, "delete")
	defer func() { span.end(err) }()
	var opts []jetstream.KVDeleteOpt
	if rev > 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	err = m.untilAnswered(ctx, func(ctx context.Context) error { return m.kv.Delete(ctx, key, opts...) })
	if err == nil {
		m.copy.forget(key)
	}
	if err == nil || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		if err != nil {
			m.observe(EventConflict)
		}
		return err
	}
	m.observe(EventStoreError)
	return fmt.Errorf("%w: delete session: %w", ErrUnavailable, err)
}

// A leader election in a cluster leaves the bucket without an answer for a
// few seconds. Each request to the bucket is given attemptTimeout and made
// again, retryWait later, until the bucket answers or StoreTimeout passes.
// Repeating is safe: a load reads; a save carries the revision it expects
// (a save that was stored although its answer was lost comes back as a
// conflict, which commit resolves by merging); a delete deletes.
const (
	attemptTimeout = 2 * time.Second
	retryWait      = 100 * time.Millisecond
	inFlightWait   = 2 * time.Millisecond
)

// untilAnswered runs op until the bucket answers it (nil, or an error that
// is not an election's: leaderless.Is), or StoreTimeout passes. While the
// connection is reconnecting (its server died; another takes over in a
// moment) it waits rather than fail; a closed connection fails at once.
func (m *Manager) untilAnswered(ctx context.Context, op func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	staleWait := retryWait
	for {
		var err error
		switch st := m.nc.Status(); st {
		case nats.CONNECTED:
			actx, acancel := context.WithTimeout(ctx, min(attemptTimeout, m.cfg.StoreTimeout))
			err = op(actx)
			acancel()
			if err == nil || !retryable(err) || ctx.Err() != nil {
				return err
			}
		case nats.RECONNECTING, nats.CONNECTING:
			err = fmt.Errorf("NATS connection is %s", st)
		default:
			return fmt.Errorf("NATS connection is %s", st)
		}
		wait := retryWait
		switch {
		case errors.Is(err, errInFlight):
			wait = inFlightWait
		case errors.Is(err, errStaleLeader):
			// A deposed leader steps down within seconds; a revision
			// cookie the client altered never comes true: ask less and
			// less often.
			wait, staleWait = staleWait, min(2*staleWait, attemptTimeout)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// retryable reports an error that asking again can cure: an election, a
// leader that has not caught up with the client (errStaleLeader), a write
// of the same key still being replicated (errInFlight).
func retryable(err error) bool {
	return leaderless.Is(err) || errors.Is(err, errStaleLeader) || errors.Is(err, errInFlight)
}

func isConflict(err error) bool { return errors.Is(err, jetstream.ErrKeyRevisionMismatch) }
