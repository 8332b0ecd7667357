package sessions

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// load returns the live record stored under key, or nil when there is none:
// never issued, destroyed, expired, or unreadable. Only failures to reach
// the store are errors.
func (m *Manager) load(ctx context.Context, key string) (*record, uint64, error) {
	if err := m.connected(); err != nil {
		m.observe(EventStoreError)
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	e, err := m.kv.Get(ctx, key)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		m.observe(EventStoreError)
		return nil, 0, fmt.Errorf("%w: load session: %w", ErrUnavailable, err)
	}
	m.observe(EventLoad)
	if err != nil {
		return nil, 0, nil
	}
	rec, err := decodeRecord(e.Value())
	if err != nil || rec.expired(m.now()) {
		return nil, 0, nil
	}
	return rec, e.Revision(), nil
}

// write stores rec under key if the key is still at revision rev (0: the
// key must not exist). It reports a conflict as jetstream.ErrKeyRevisionMismatch.
func (m *Manager) write(ctx context.Context, key string, rec *record, rev uint64) (uint64, error) {
	if err := m.connected(); err != nil {
		m.observe(EventStoreError)
		return 0, err
	}
	data := rec.encode()
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	newRev, err := m.kv.Update(ctx, key, data, rev)
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
func (m *Manager) remove(ctx context.Context, key string, rev uint64) error {
	if err := m.connected(); err != nil {
		m.observe(EventStoreError)
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	var opts []jetstream.KVDeleteOpt
	if rev > 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	err := m.kv.Delete(ctx, key, opts...)
	if err == nil || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		if err != nil {
			m.observe(EventConflict)
		}
		return err
	}
	m.observe(EventStoreError)
	return fmt.Errorf("%w: delete session: %w", ErrUnavailable, err)
}

func isConflict(err error) bool { return errors.Is(err, jetstream.ErrKeyRevisionMismatch) }
