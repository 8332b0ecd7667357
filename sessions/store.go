package sessions

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/leaderless"
)

// load returns the live record stored under key, or nil when there is none:
// never issued, destroyed, expired, or unreadable. Only failures to reach
// the store are errors.
func (m *Manager) load(ctx context.Context, key string) (rec *record, rev uint64, err error) {
	ctx, span := m.startSpan(ctx, "load")
	defer func() { span.found(rec != nil); span.end(err) }()
	var e jetstream.KeyValueEntry
	err = m.untilAnswered(ctx, func(ctx context.Context) (err error) {
		e, err = m.kv.Get(ctx, key)
		return err
	})
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		m.observe(EventStoreError)
		return nil, 0, fmt.Errorf("%w: load session: %w", ErrUnavailable, err)
	}
	m.observe(EventLoad)
	if err != nil {
		return nil, 0, nil
	}
	rec, derr := decodeRecord(e.Value())
	if derr != nil || rec.expired(m.now()) {
		return nil, 0, nil
	}
	return rec, e.Revision(), nil
}

// write stores rec under key if the key is still at revision rev (0: the
// key must not exist). It reports a conflict as jetstream.ErrKeyRevisionMismatch.
func (m *Manager) write(ctx context.Context, key string, rec *record, rev uint64) (_ uint64, err error) {
	ctx, span := m.startSpan(ctx, "save")
	defer func() { span.end(err) }()
	data := rec.encode()
	var newRev uint64
	err = m.untilAnswered(ctx, func(ctx context.Context) (err error) {
		newRev, err = m.kv.Update(ctx, key, data, rev)
		return err
	})
	switch {
	case err == nil:
		m.observe(EventSave)
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
)

// untilAnswered runs op until the bucket answers it (nil, or an error that
// is not an election's: leaderless.Is), or StoreTimeout passes. While the
// connection is reconnecting (its server died; another takes over in a
// moment) it waits rather than fail; a closed connection fails at once.
func (m *Manager) untilAnswered(ctx context.Context, op func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	for {
		var err error
		switch st := m.nc.Status(); st {
		case nats.CONNECTED:
			actx, acancel := context.WithTimeout(ctx, min(attemptTimeout, m.cfg.StoreTimeout))
			err = op(actx)
			acancel()
			if err == nil || !leaderless.Is(err) || ctx.Err() != nil {
				return err
			}
		case nats.RECONNECTING, nats.CONNECTING:
			err = fmt.Errorf("NATS connection is %s", st)
		default:
			return fmt.Errorf("NATS connection is %s", st)
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(retryWait):
		}
	}
}

func isConflict(err error) bool { return errors.Is(err, jetstream.ErrKeyRevisionMismatch) }
