package node

// The idempotency middleware's two halves: taking a key (or finding its
// record, or waiting for it) and running the request that holds it.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/sessions"
)

// errStoreFull is a bucket at its MaxBytes.
var errStoreFull = errors.New("idempotency bucket is full")

// take is what acquire decided: run (rev of the marker), replay a record,
// or answer status with conflict.
type take struct {
	rev      uint64
	replay   *idemRecord
	conflict string
	status   int
}

// acquire takes keys for r, or finds what answers r instead.
func (m *Idempotency) acquire(ctx context.Context, r *http.Request, keys idemKeys) (take, error) {
	deadline := m.cfg.Now().Add(m.cfg.Wait)
	var watch jetstream.KeyWatcher
	defer func() {
		if watch != nil {
			_ = watch.Stop()
		}
	}()
	for {
		val, err := keys.seal(m.running(r))
		if err != nil {
			return take{}, err
		}
		rev, err := bounded(ctx, func(ctx context.Context) (uint64, error) { return m.kv.Create(ctx, keys.kv, val) })
		if err == nil {
			return take{rev: rev}, nil
		}
		if !casConflict(err) {
			return take{}, storeErr(err)
		}
		e, err := bounded(ctx, func(ctx context.Context) (jetstream.KeyValueEntry, error) { return m.kv.Get(ctx, keys.kv) })
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // freed meanwhile
		}
		if err != nil {
			return take{}, storeErr(err)
		}
		rec, err := keys.open(e.Value())
		if err != nil {
			return take{}, err
		}
		if rec.Method != r.Method || rec.Path != r.URL.RequestURI() {
			return take{conflict: fmt.Sprintf("Idempotency-Key was already used for %s %s", rec.Method, rec.Path),
				status: http.StatusUnprocessableEntity}, nil
		}
		if rec.State == stateDone {
			return take{replay: rec}, nil
		}
		now := m.cfg.Now()
		if now.After(rec.LeaseUntil) {
			rev, err := bounded(ctx, func(ctx context.Context) (uint64, error) { return m.kv.Update(ctx, keys.kv, val, e.Revision()) })
			if err == nil {
				m.cfg.Logger.Warn().Ctx(ctx).Str("key", keys.kv[:12]).Str("previous_owner", rec.Owner).
					Msg("idempotency: took over a key whose running marker lapsed (its node died or stalled); running the request again")
				return take{rev: rev}, nil
			}
			if !casConflict(err) {
				return take{}, storeErr(err)
			}
			continue // someone else renewed or took it
		}
		if !now.Before(deadline) {
			return take{conflict: "a request with this Idempotency-Key is still running; retry later with the same key",
				status: http.StatusConflict}, nil
		}
		if watch == nil {
			if watch, err = m.kv.Watch(ctx, keys.kv, jetstream.UpdatesOnly()); err != nil {
				return take{}, storeErr(err)
			}
			continue // look again: it may have changed before the watch began
		}
		until := deadline
		if rec.LeaseUntil.Before(until) {
			until = rec.LeaseUntil
		}
		if err := waitChange(ctx, watch, e.Revision(), until.Sub(now)); err != nil {
			return take{}, err
		}
	}
}

// bounded calls f with ctx bounded by attemptTimeout: a JetStream call
// whose leader died waits for no answer, and the client had better retry.
func bounded[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	return f(ctx)
}

// waitChange waits until watch sees a revision after rev, or d passes.
func waitChange(ctx context.Context, watch jetstream.KeyWatcher, rev uint64, d time.Duration) error {
	timer := time.NewTimer(d + 10*time.Millisecond)
	defer timer.Stop()
	for {
		select {
		case e, ok := <-watch.Updates():
			if !ok {
				return errors.New("idempotency: the watch of the key ended")
			}
			if e == nil || e.Revision() > rev {
				return nil
			}
		case <-timer.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// storeErr marks a full bucket as errStoreFull.
func storeErr(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "maximum bytes") {
		return fmt.Errorf("%w: %w", errStoreFull, err)
	}
	return err
}

// run runs next for r while holding keys (marker revision rev), then
// stores its response, or frees the key when the response says a retry
// may succeed.
func (m *Idempotency) run(w http.ResponseWriter, r *http.Request, keys idemKeys, rev uint64, next http.Handler) {
	l := &lease{m: m, keys: keys, rev: rev, rec: m.running(r), stop: make(chan struct{}), done: make(chan struct{})}
	go l.renew()
	body := newHashBody(r, m.cfg.MaxBodyHash)
	// The handler gets a copy of r reading through the hash: the server's
	// own request keeps its body, by which net/http knows how much of it
	// is left unread (and closes the connection rather than read it).
	hr := new(http.Request)
	*hr = *r
	hr.Body = body
	rw := &recordWriter{ResponseWriter: w, max: m.cfg.MaxResponseBytes}
	completed := false
	defer func() {
		l.end()
		// The response ends once its record is stored (or the key freed),
		// so a client that saw the end finds it on a retry. Through a
		// JetStream election that takes seconds: keep trying for twice the
		// lease, by which time another node may take the key over anyway.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 2*m.cfg.Lease)
		defer cancel()
		if completed && !rw.wrote { // the server answers 200 with what the header holds
			rw.WriteHeader(http.StatusOK)
		}
		if !completed || retryable(rw.status) {
			l.free(ctx)
			return
		}
		l.store(ctx, rw.record(l.rec, body.sum()))
	}()
	next.ServeHTTP(rw, hr)
	completed = true
}

// retryable are the statuses not stored: a retry may succeed. Besides
// server errors, timeouts and rate limits: 401 (not signed in) and 419
// (the CSRF token expired), answered before the request did anything,
// whose own text tells the client to try again.
func retryable(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusUnauthorized, sessions.StatusPageExpired:
		return true
	}
	return status >= 500
}

// lease holds a key's running marker while its request runs.
type lease struct {
	m    *Idempotency
	keys idemKeys
	mu   sync.Mutex
	rev  uint64
	lost bool
	rec  *idemRecord
	stop chan struct{}
	done chan struct{}
}

// renew moves the marker's lease on every Lease/3 until end.
func (l *lease) renew() {
	defer close(l.done)
	t := time.NewTicker(l.m.cfg.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		l.rec.LeaseUntil = l.m.cfg.Now().Add(l.m.cfg.Lease)
		val, err := l.keys.seal(l.rec)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), l.m.cfg.Lease/3)
			err = l.put(ctx, val)
			cancel()
			l.lost = l.lost || casConflict(err)
		}
		l.mu.Unlock()
		if err != nil {
			l.m.cfg.Logger.Warn().Err(err).Str("key", l.keys.kv[:12]).Msg("idempotency: lease not renewed")
		}
	}
}

// end stops the renewals.
func (l *lease) end() {
	close(l.stop)
	<-l.done
}

// attemptTimeout bounds one write of a record: a write whose stream leader
// died gets no acknowledgement, and waiting longer for it helps nothing.
const attemptTimeout = 3 * time.Second

// put writes val over the lease's revision, trying again (each try
// bounded by attemptTimeout) until ctx ends. A try that timed out may
// have been written after all: a CAS conflict after it is checked against
// what the key holds.
func (l *lease) put(ctx context.Context, val []byte) error {
	return untilStored(ctx, func(ctx context.Context) error {
		rev, err := l.m.kv.Update(ctx, l.keys.kv, val, l.rev)
		if casConflict(err) {
			if e, gerr := l.m.kv.Get(ctx, l.keys.kv); gerr == nil && bytes.Equal(e.Value(), val) {
				rev, err = e.Revision(), nil // an earlier try was written
			}
		}
		if err == nil {
			l.rev = rev
		}
		return err
	})
}

// free deletes the marker, so that a retry runs the request again.
func (l *lease) free(ctx context.Context) {
	err := untilStored(ctx, func(ctx context.Context) error {
		err := l.m.kv.Delete(ctx, l.keys.kv, jetstream.LastRevision(l.rev))
		if casConflict(err) {
			if _, gerr := l.m.kv.Get(ctx, l.keys.kv); errors.Is(gerr, jetstream.ErrKeyNotFound) {
				err = nil // an earlier try deleted it
			}
		}
		return err
	})
	if err != nil {
		l.m.cfg.Logger.Warn().Err(err).Str("key", l.keys.kv[:12]).Msg("idempotency: key not freed; a retry waits for its lease to lapse")
	}
}

// store replaces the marker with the response record.
func (l *lease) store(ctx context.Context, rec *idemRecord) {
	val, err := l.keys.seal(rec)
	if err == nil {
		err = l.put(ctx, val)
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && !casConflict(err) && apiErr.Code != 503 && len(rec.Body) > 0 {
		// Refused (too large for the bucket): keep the outcome without the body.
		rec.Omitted, rec.Body = int64(len(rec.Body)), nil
		if val, err = l.keys.seal(rec); err == nil {
			err = l.put(ctx, val)
		}
	}
	switch {
	case casConflict(err):
		l.m.cfg.Logger.Error().Str("key", l.keys.kv[:12]).
			Msg("idempotency: the key was taken over while its request ran (lease lapsed): the request may have run twice")
	case err != nil:
		l.m.cfg.Logger.Error().Err(err).Str("key", l.keys.kv[:12]).Msg("idempotency: response not stored; a retry waits for the lease, then runs again")
	}
}

// casConflict reports whether err says the key's revision was not the
// one expected: another node wrote it (R1 and R3 streams say so with
// different codes; KV's Create and Update turn both into ErrKeyExists,
// Delete does not).
func casConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || (errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant))
}

// untilStored calls f, each call bounded by attemptTimeout, until it
// succeeds, the key turns out to be taken (a CAS conflict, final), it is
// refused for good (an API error other than 503), or ctx ends, with
// backoff: a JetStream election lasts seconds.
func untilStored(ctx context.Context, f func(context.Context) error) error {
	wait := 50 * time.Millisecond
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		err := f(actx)
		cancel()
		var apiErr *jetstream.APIError
		if err == nil || casConflict(err) || (errors.As(err, &apiErr) && apiErr.Code != 503) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// recordWriter passes a response through and keeps a copy of it.
type recordWriter struct {
	http.ResponseWriter
	max     int
	wrote   bool
	status  int
	header  http.Header
	buf     []byte
	omitted int64
}

// WriteHeader keeps the header, and writes it.
func (w *recordWriter) WriteHeader(code int) {
	if w.wrote || code < 200 {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.wrote, w.status, w.header = true, code, storedHeader(w.Header())
	w.ResponseWriter.WriteHeader(code)
}

// Write keeps up to max bytes of the body.
func (w *recordWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if w.omitted == 0 && len(w.buf)+len(b) <= w.max {
		w.buf = append(w.buf, b...)
	} else {
		w.omitted += int64(len(w.buf) + len(b))
		w.buf = nil
	}
	return w.ResponseWriter.Write(b)
}

// Flush writes the header when it is not yet, then flushes.
func (w *recordWriter) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *recordWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// record is the done record of the response.
func (w *recordWriter) record(marker *idemRecord, fingerprint string) *idemRecord {
	return &idemRecord{State: stateDone, Method: marker.Method, Path: marker.Path, Owner: marker.Owner,
		Fingerprint: fingerprint, Status: w.status, Header: w.header, Body: w.buf, Omitted: w.omitted}
}
