package bus

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// Unique jobs: a dispatch with Unique(key) takes key in UniqueBucket with
// a KV Create (atomic, fleet-wide and cluster-wide) before it stores the
// job; while the key is held, another dispatch with the same key stores
// nothing and returns a *DuplicateError. Every key is written with a
// per-key TTL, so none outlives its lease even if its holder vanishes.

const (
	// UniqueBucket holds one key per held unique key: the key's token
	// (KeyToken) with a UniqueLock as JSON, written with a per-key TTL.
	UniqueBucket = "jetfleet_unique"
	// HeaderUnique carries a job's unique key. A worker that finishes the
	// job (it succeeded, or was dead-lettered) removes the key from
	// UniqueBucket if it still names the job and is held until done.
	HeaderUnique = "Jetfleet-Unique"
	// DefaultUniqueLease is how long an until-done key is held without a
	// worker seeing its job: from dispatch (or the end of its delay), and
	// again from every delivery, release or limit wait of the job.
	DefaultUniqueLease = 24 * time.Hour
	// MaxKeyLen is the longest unique key (and limit key), in bytes.
	MaxKeyLen = wire.MaxKeyLen
)

// ErrDuplicate is wrapped by the error of a dispatch whose unique key is
// held by another job; nothing was stored. errors.As with a
// *DuplicateError gives the holder's ID.
var ErrDuplicate = errors.New("duplicate job: its unique key is held")

// DuplicateError is the error of a dispatch refused by Unique.
type DuplicateError struct {
	// Key is the unique key.
	Key string
	// JobID is the ID of the job holding the key.
	JobID string
}

func (e *DuplicateError) Error() string {
	return fmt.Sprintf("bus: %v: key %q is held by job %s", ErrDuplicate, e.Key, e.JobID)
}

// Unwrap returns ErrDuplicate.
func (e *DuplicateError) Unwrap() error { return ErrDuplicate }

// UniqueOption tunes Unique.
type UniqueOption func(*uniqueSpec)

type uniqueSpec struct {
	key   string
	hold  time.Duration // UniqueFor; 0: until done
	lease time.Duration
}

// UniqueFor holds the key for d from dispatch, whether the job is done by
// then or not (asynq's Unique(ttl), Laravel's uniqueFor): at most one job
// per key per d. d is counted in whole seconds, at least 1.
func UniqueFor(d time.Duration) UniqueOption { return func(u *uniqueSpec) { u.hold = d } }

// UniqueLease sets how long an until-done key survives without a worker
// seeing its job (default DefaultUniqueLease): from dispatch (or the end
// of its delay), and again from each delivery. A queue paused, or a
// backlog, longer than that lets the key go while the job still waits.
func UniqueLease(d time.Duration) UniqueOption { return func(u *uniqueSpec) { u.lease = d } }

// Unique makes the dispatch take key (1 to MaxKeyLen bytes, no control
// characters) fleet-wide first. By default the key is held until the job
// is done: from dispatch, across its delay, retries and releases, until
// it succeeds, is dead-lettered or is cancelled (so forgetting or flushing
// the dead letter changes nothing, and a retried dead letter runs without
// the key). Dispatch, DispatchJSON and DispatchMany take keys; a job of a
// batch or chain, a prepared job (Prepare, the outbox) and a periodic one
// cannot be unique: they fail with ErrInvalid. While it is held, a dispatch with the same key stores nothing and
// fails with a *DuplicateError (ErrDuplicate) naming the holder. A
// dispatch with the same job ID as the holder (JobID) is not a duplicate:
// it is stored again, and JetStream's dedupe keeps one.
func Unique(key string, opts ...UniqueOption) Option {
	return func(o *options) {
		u := &uniqueSpec{key: key, lease: DefaultUniqueLease}
		for _, opt := range opts {
			opt(u)
		}
		o.unique = u
	}
}

// UniqueLock is the value of a key in UniqueBucket, as JSON.
type UniqueLock struct {
	// JobID is the ID of the job holding the key.
	JobID string `json:"job_id"`
	// Key is the unique key itself (the bucket's key is its token).
	Key string `json:"key"`
	// Queue and Kind are the job's.
	Queue string `json:"queue"`
	Kind  string `json:"kind"`
	// UntilDone is true when the key is held until the job is done;
	// false when it is held for a fixed time (UniqueFor).
	UntilDone bool `json:"until_done"`
	// LeaseSeconds is the lease an until-done key gets again each time a
	// worker sees its job.
	LeaseSeconds int64 `json:"lease_s,omitempty"`
	// ExpiresAt is when the key's TTL runs out unless renewed.
	ExpiresAt time.Time `json:"expires_at"`
}

// KeyToken is how a unique or limit key appears as a KV key: the bytes
// A-Z, a-z, 0-9, '_' and '-' as they are, every other byte as '=' and
// two upper-case hex digits ("sync-account:7" is "sync-account=3A7").
func KeyToken(key string) string { return wire.KeyToken(key) }

// ValidateKey checks a unique or limit key: 1 to MaxKeyLen bytes of UTF-8
// without control characters. what names it in the error, which wraps
// ErrInvalid.
func ValidateKey(what, key string) error { return wire.ValidateKey(what, key) }

// OpenUniqueBucket returns UniqueBucket, creating it as cfg says when it
// is missing (an existing bucket is used as it is).
func OpenUniqueBucket(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.KeyValue, error) {
	return wire.EnsureBucket(ctx, js, wire.UniqueBucketConfig(cfg.Replicas))
}

// uniqueLocks is a Dispatcher's handle on UniqueBucket, opened on the
// first unique dispatch.
type uniqueLocks struct {
	mu sync.Mutex
	kv jetstream.KeyValue
}

func (d *Dispatcher) uniqueBucket(ctx context.Context) (jetstream.KeyValue, error) {
	d.unique.mu.Lock()
	defer d.unique.mu.Unlock()
	if d.unique.kv == nil {
		kv, err := OpenUniqueBucket(ctx, d.js, d.cfg)
		if err != nil {
			return nil, err
		}
		d.unique.kv = kv
	}
	return d.unique.kv, nil
}

// noUnlock is the unlock of a job without a unique key.
func noUnlock(error) {}

// lockUnique takes the unique key of a job about to be published, when
// its options ask for one, and sets HeaderUnique on msg. The returned
// unlock is called with the publish's result: it frees the key again when
// the job was certainly not stored. A held key is a *DuplicateError.
func (d *Dispatcher) lockUnique(ctx context.Context, msg *nats.Msg, id string, opts []Option) (unlock func(error), err error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	u := o.unique
	if u == nil {
		return noUnlock, nil
	}
	if err := u.validate(); err != nil {
		return nil, err
	}
	msg.Header.Set(HeaderUnique, u.key)
	if err := d.checkSize(msg); err != nil {
		return nil, err
	}
	lock := UniqueLock{JobID: id, Key: u.key, UntilDone: u.hold == 0}
	subject := msg.Subject
	if target := msg.Header.Get(headerScheduleTarget); target != "" {
		subject = target
	}
	lock.Queue, lock.Kind, _ = wire.ParseJobSubject(subject)
	ttl := u.hold
	if lock.UntilDone {
		ttl = max(time.Until(o.readyAt()), 0) + u.lease
		lock.LeaseSeconds = int64(wire.TTL(u.lease) / time.Second)
	}
	ttl = wire.TTL(ttl)
	lock.ExpiresAt = time.Now().Add(ttl).UTC()
	value, err := json.Marshal(lock)
	if err != nil {
		return nil, err
	}
	kv, err := d.uniqueBucket(ctx)
	if err != nil {
		return nil, fmt.Errorf("bus: unique key %q: %w", u.key, err)
	}
	token := wire.KeyToken(u.key)
	// A held key may be released between the Create and the read of its
	// holder: then the Create is tried again, a few times.
	for range 5 {
		rev, err := kv.Create(ctx, token, value, jetstream.KeyTTL(ttl))
		if err == nil {
			return func(perr error) { d.unlockFailed(ctx, token, rev, perr) }, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("bus: unique key %q: %w", u.key, err)
		}
		e, err := wire.GetLatest(ctx, d.js, UniqueBucket, token)
		if errors.Is(err, jetstream.ErrKeyNotFound) || err == nil && e.Deleted {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("bus: unique key %q: %w", u.key, err)
		}
		var holder UniqueLock
		_ = json.Unmarshal(e.Value, &holder)
		if holder.JobID == id {
			return noUnlock, nil
		}
		if ended, err := d.holderEnded(ctx, &holder, e); err != nil || !ended {
			return nil, &DuplicateError{Key: u.key, JobID: holder.JobID}
		}
		// The holder ended without freeing the key (its worker was killed
		// between the job's ack and the unlock, or the ack was never
		// confirmed): take the key over, if nobody changed it meanwhile.
		if _, err := wire.PurgeIfRevision(ctx, d.js, UniqueBucket, token, e.Revision); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, fmt.Errorf("bus: unique key %q: free it from job %s, which ended: %w", u.key, holder.JobID, err)
		}
	}
	return nil, fmt.Errorf("bus: unique key %q: taken and released over and over; try again", u.key)
}

func (u *uniqueSpec) validate() error {
	if err := wire.ValidateKey("unique key", u.key); err != nil {
		return err
	}
	if u.hold < 0 {
		return fmt.Errorf("%w: UniqueFor is %s; it must be positive (whole seconds, at least 1s)", ErrInvalid, u.hold)
	}
	if u.lease <= 0 {
		return fmt.Errorf("%w: UniqueLease is %s; it must be positive (whole seconds, at least 1s)", ErrInvalid, u.lease)
	}
	return nil
}

// errStoredBefore is what unlock is told when JetStream answered that it
// holds an earlier message of the job's ID (dedupe) and stored nothing:
// the key this dispatch took names no stored job that will free it (the
// earlier one finished and freed its key, or carries another key), so it
// is freed at once. A key found held by the same job ID was not taken by
// the dispatch, and stays (noUnlock).
var errStoredBefore = errors.New("bus: an earlier message of this job ID is stored; nothing new was")

// unlockFailed frees a key taken for a job whose publish failed, unless
// the job may still have been stored (the wait for JetStream's answer
// ended): then the key stays, and dispatching the same job ID again goes
// through (the holder is that job). It frees it too when JetStream
// stored nothing new (errStoredBefore).
func (d *Dispatcher) unlockFailed(ctx context.Context, token string, rev uint64, perr error) {
	if perr == nil || errors.Is(perr, context.DeadlineExceeded) || errors.Is(perr, context.Canceled) || errors.Is(perr, nats.ErrTimeout) {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_, _ = wire.PurgeIfRevision(ctx, d.js, UniqueBucket, token, rev)
}

// UnlockUnique frees the unique key of job (HeaderUnique) now that it is
// done, if the key is held until done and still names job; for a program
// that runs jobs itself (workers call it when a job succeeds or is
// dead-lettered). A job without a unique key, or whose key is held by
// another job or for a fixed time, changes nothing.
func UnlockUnique(ctx context.Context, js jetstream.JetStream, job *Job) error {
	key := job.Header.Get(HeaderUnique)
	if key == "" {
		return nil
	}
	token := wire.KeyToken(key)
	lock, e, err := readLock(ctx, js, token)
	if err != nil || lock == nil || lock.JobID != job.ID || !lock.UntilDone {
		return err
	}
	if _, err := wire.PurgeIfRevision(ctx, js, UniqueBucket, token, e.Revision); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("bus: free unique key %q of job %s: %w", key, job.ID, err)
	}
	return nil
}

// freeUnique frees the until-done unique key of a job st that was
// cancelled before it ended, as a worker does when a job ends: a
// cancelled job must not hold its key until the lease runs out.
func (in *Inspector) freeUnique(ctx context.Context, st *JobStatus) error {
	key := st.Headers[HeaderUnique]
	if key == "" {
		return nil
	}
	job := &Job{ID: st.ID, Header: nats.Header{HeaderUnique: []string{key}}}
	if err := UnlockUnique(ctx, in.js, job); err != nil {
		return fmt.Errorf("bus: job %s is cancelled, but its unique key is held until its lease ends: %w", st.ID, err)
	}
	return nil
}

// clearGrace is how young a unique key freeClearedKeys and a dispatch's
// take-over leave alone: its dispatch may still be storing the job it
// names.
const clearGrace = 10 * time.Second

// holderEnded reports whether the until-done key e, held by holder, names
// a job that has ended: older than clearGrace, and its job neither in
// JOBS (waiting, delayed, retrying or running: JOBS keeps a job until it
// is acknowledged) nor answered for by a worker. A worker frees the key
// right after the job's ack; one killed in between, or whose ack was
// never confirmed, leaves it held until its lease (24 h by default).
func (d *Dispatcher) holderEnded(ctx context.Context, holder *UniqueLock, e wire.KVEntry) (bool, error) {
	if !holder.UntilDone || holder.JobID == "" || time.Since(e.Created) < cmp.Or(d.uniqueGrace, clearGrace) {
		return false, nil
	}
	in := &Inspector{js: d.js, cfg: d.cfg}
	if stored, err := in.inJobs(ctx, holder.JobID); err != nil || stored {
		return false, err
	}
	running, err := in.locate(ctx, holder.JobID)
	return running == nil && err == nil, err
}

// freeClearedKeys frees the until-done unique keys of queue whose job is
// gone, after Clear deleted the queue's jobs: a key whose job is neither
// in JOBS (ready, waiting for a retry, delayed) nor running on a worker
// names a job that will never free it. Keys taken or renewed within
// clearGrace are left: their job may not be stored yet.
func (in *Inspector) freeClearedKeys(ctx context.Context, queue string) error {
	kv, err := in.js.KeyValue(ctx, UniqueBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	lister, err := kv.ListKeys(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = lister.Stop() }()
	var running map[string]*JobStatus
	for token := range lister.Keys() {
		lock, e, err := readLock(ctx, in.js, token)
		if err != nil {
			return err
		}
		if lock == nil || !lock.UntilDone || lock.Queue != queue || time.Since(e.Created) < cmp.Or(in.clearGrace, clearGrace) {
			continue
		}
		if running == nil {
			if running, err = in.runningByID(ctx); err != nil {
				return err
			}
		}
		if running[lock.JobID] != nil {
			continue
		}
		stored, err := in.inJobs(ctx, lock.JobID)
		if err != nil {
			return err
		}
		if stored {
			continue
		}
		if _, err := wire.PurgeIfRevision(ctx, in.js, UniqueBucket, token, e.Revision); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("free unique key %q of job %s: %w", lock.Key, lock.JobID, err)
		}
	}
	return nil
}

// inJobs reports whether JOBS holds job id, on its queue or delayed.
func (in *Inspector) inJobs(ctx context.Context, id string) (bool, error) {
	for _, filter := range []string{wire.JobFilterForID(id), wire.DelayFilterForID(id)} {
		m, err := in.lastMsg(ctx, JobsStream, filter)
		if err != nil || m != nil {
			return m != nil, err
		}
	}
	return false, nil
}

// KeepUnique renews the lease of job's until-done unique key so that it
// lasts at least wait plus the lease from now, if the key still names
// job; for a program that runs jobs itself (workers call it on every
// delivery with wait 0, and with the delay when they release a job). It
// writes only when the key would expire sooner than half a lease after
// wait.
func KeepUnique(ctx context.Context, js jetstream.JetStream, job *Job, wait time.Duration) error {
	key := job.Header.Get(HeaderUnique)
	if key == "" {
		return nil
	}
	token := wire.KeyToken(key)
	lock, e, err := readLock(ctx, js, token)
	if err != nil || lock == nil || lock.JobID != job.ID || !lock.UntilDone {
		return err
	}
	lease := time.Duration(lock.LeaseSeconds) * time.Second
	if lease <= 0 {
		lease = DefaultUniqueLease
	}
	if time.Until(lock.ExpiresAt) > wait+lease/2 {
		return nil
	}
	ttl := wire.TTL(wait + lease)
	lock.ExpiresAt = time.Now().Add(ttl).UTC()
	value, err := json.Marshal(lock)
	if err != nil {
		return err
	}
	if _, err := wire.PutIfRevision(ctx, js, UniqueBucket, token, value, e.Revision, ttl); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("bus: renew unique key %q of job %s: %w", key, job.ID, err)
	}
	return nil
}

// readLock reads a unique key from the bucket's leader; nil when it is
// not held (or the bucket does not exist).
func readLock(ctx context.Context, js jetstream.JetStream, token string) (*UniqueLock, wire.KVEntry, error) {
	e, err := wire.GetLatest(ctx, js, UniqueBucket, token)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) || err == nil && e.Deleted {
		return nil, e, nil
	}
	if err != nil {
		return nil, e, err
	}
	var lock UniqueLock
	if err := json.Unmarshal(e.Value, &lock); err != nil {
		return nil, e, fmt.Errorf("bus: unique key %s holds no lock: %w", token, err)
	}
	return &lock, e, nil
}

// noUniqueSchedule refuses Unique on a periodic job: its runs are
// published by the server's scheduler, which takes no key.
func noUniqueSchedule(opts []Option) error {
	return noUnique(opts, "a periodic job cannot be unique (its runs are published by JetStream's scheduler, which takes no key)")
}

// noUniqueInBatch refuses Unique on a job or callback of a batch or chain:
// they are stored together, with no key taken.
func noUniqueInBatch(opts []Option) error {
	return noUnique(opts, "a job of a batch or chain cannot be unique (its jobs are stored together, with no key taken)")
}

// noUniquePrepared refuses Unique on a prepared job (Prepare, the outbox's
// Tx.Dispatch): it is published later, or never, by PublishPrepared, which
// takes no key. JobID makes such a job idempotent instead.
func noUniquePrepared(opts []Option) error {
	return noUnique(opts, "a prepared job cannot be unique (it is published later by PublishPrepared, which takes no key; give it a JobID to make it idempotent)")
}

// noUnique returns an ErrInvalid saying why when opts hold Unique, so that
// a dispatch that cannot take the key fails rather than store a job that
// is unique in name only.
func noUnique(opts []Option, why string) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.unique != nil {
		return fmt.Errorf("%w: %s", ErrInvalid, why)
	}
	return nil
}
