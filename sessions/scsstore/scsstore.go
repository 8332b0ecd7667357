// Package scsstore lets alexedwards/scs keep its sessions in a NATS
// JetStream KV bucket, for applications that already use
// scs.SessionManager. It implements scs.Store, scs.CtxStore,
// scs.IterableStore and scs.IterableCtxStore:
//
//	store, err := scsstore.New(js, scsstore.Config{})
//	sm := scs.New()
//	sm.Store = store
//	sm.HashTokenInStore = true // recommended: see below
//
// Like the sessions package, it keys records by the SHA-256 of the token,
// so `nats kv ls` reveals no token, and it reads through the stream leader
// (direct gets off), so a session written through one node is seen by the
// next request on any other node of a cluster.
//
// The record also holds the token it was committed under, because All
// must return tokens. Set scs.SessionManager.HashTokenInStore so that what
// the store is given, and keeps, is a hash rather than a live token.
//
// The adapter keeps scs's semantics: each Commit replaces the whole session,
// so two concurrent requests of one user that change different keys can
// lose one change, and a Commit after a Destroy brings the session back.
// The sessions package's own middleware merges concurrent changes and
// keeps destroyed sessions destroyed; prefer it for new code.
package scsstore

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/sessions/internal/bucket"
)

// Config configures a Store. The zero value is ready to use.
type Config struct {
	// Bucket is the KV bucket; New creates it when missing. Default
	// "scs_sessions". Do not share a bucket with the sessions package: the
	// record formats differ.
	Bucket string
	// Replicas is the bucket's replica count. Default 1; 3 in a cluster.
	Replicas int
	// TTL is the bucket's MaxAge: how long a record lives after its last
	// commit. It must be at least scs.SessionManager.Lifetime, or sessions
	// vanish early. Expiry itself follows the deadline scs passes to
	// Commit. Default 24 hours, scs's default Lifetime.
	TTL time.Duration
	// Timeout bounds each store operation when the context has no
	// deadline (the context-free methods scs may call). Default 2 seconds.
	Timeout time.Duration
	// MaxBytes bounds the bucket: past it the server removes the sessions
	// committed least recently, and scs gives their clients a new
	// session. Anyone sending requests can make scs commit sessions, so
	// without a bound they could fill the NATS account's storage.
	// Negative: no bound. Default 256 MiB.
	MaxBytes int64
}

// Store is an scs session store on a JetStream KV bucket. It is safe for
// concurrent use.
type Store struct {
	kv      jetstream.KeyValue
	nc      *nats.Conn
	timeout time.Duration
}

// New is NewContext with a 30-second deadline.
func New(js jetstream.JetStream, cfg Config) (*Store, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return NewContext(ctx, js, cfg)
}

// NewContext creates the bucket when needed and returns a Store on it.
func NewContext(ctx context.Context, js jetstream.JetStream, cfg Config) (*Store, error) {
	if js == nil {
		return nil, errors.New("scsstore: nil JetStream")
	}
	cfg = cfg.withDefaults()
	if cfg.TTL < time.Second || cfg.Timeout < 0 {
		return nil, fmt.Errorf("scsstore: TTL %s must be at least 1s and Timeout %s not negative", cfg.TTL, cfg.Timeout)
	}
	kv, err := bucket.Open(ctx, js, bucket.Spec{Name: cfg.Bucket, Replicas: cfg.Replicas, TTL: cfg.TTL, MaxBytes: cfg.MaxBytes,
		Description: "scs sessions (keys are SHA-256 of session tokens)"})
	if err != nil {
		return nil, fmt.Errorf("scsstore: %w", err)
	}
	return &Store{kv: kv, nc: js.Conn(), timeout: cfg.Timeout}, nil
}

func (c Config) withDefaults() Config {
	if c.Bucket == "" {
		c.Bucket = "scs_sessions"
	}
	if c.TTL == 0 {
		c.TTL = 24 * time.Hour
	}
	if c.Timeout == 0 {
		c.Timeout = 2 * time.Second
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = 256 << 20
	}
	return c
}

func key(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Find returns the data committed for token, found=false when there is
// none or it expired.
func (s *Store) Find(token string) ([]byte, bool, error) {
	return s.FindCtx(context.Background(), token)
}

// FindCtx is Find with a context.
func (s *Store) FindCtx(ctx context.Context, token string) ([]byte, bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	e, err := s.kv.Get(ctx, key(token))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("scsstore: find: %w", err)
	}
	r, ok := decode(e.Value())
	if !ok || r.token != token || !time.Now().Before(r.expiry) {
		return nil, false, nil
	}
	return r.data, true, nil
}

// Commit stores data for token until expiry, replacing what was there.
func (s *Store) Commit(token string, b []byte, expiry time.Time) error {
	return s.CommitCtx(context.Background(), token, b, expiry)
}

// CommitCtx is Commit with a context.
func (s *Store) CommitCtx(ctx context.Context, token string, b []byte, expiry time.Time) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	val := encode(rec{token: token, expiry: expiry, data: b})
	_, err := s.kv.Put(ctx, key(token), val)
	if errors.Is(err, nats.ErrMaxPayload) {
		return fmt.Errorf("scsstore: session record is %d bytes and the NATS server's max_payload is %d bytes: %w",
			len(val), s.nc.MaxPayload(), err)
	}
	if err != nil {
		return fmt.Errorf("scsstore: commit: %w", err)
	}
	return nil
}

// Delete removes token's session; deleting a missing one is not an error.
func (s *Store) Delete(token string) error { return s.DeleteCtx(context.Background(), token) }

// DeleteCtx is Delete with a context.
func (s *Store) DeleteCtx(ctx context.Context, token string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.kv.Delete(ctx, key(token)); err != nil {
		return fmt.Errorf("scsstore: delete: %w", err)
	}
	return nil
}

// All returns every unexpired session by token; an empty map when none.
func (s *Store) All() (map[string][]byte, error) { return s.AllCtx(context.Background()) }

// AllCtx is All with a context. It reads every record in the bucket.
// When ctx has no deadline, Config.Timeout bounds the listing of the keys
// and each read after it, as it bounds the other operations.
func (s *Store) AllCtx(ctx context.Context) (map[string][]byte, error) {
	out := map[string][]byte{}
	keys, err := s.keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("scsstore: list: %w", err)
	}
	now := time.Now()
	for _, k := range keys {
		e, err := s.get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted or expired since listed
		}
		if err != nil {
			return nil, fmt.Errorf("scsstore: all: %w", err)
		}
		if r, ok := decode(e.Value()); ok && now.Before(r.expiry) {
			out[r.token] = r.data
		}
	}
	return out, nil
}

func (s *Store) keys(ctx context.Context) ([]string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.kv.Keys(ctx)
}

func (s *Store) get(ctx context.Context, k string) (jetstream.KeyValueEntry, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.kv.Get(ctx, k)
}

func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.timeout)
}

// rec layout: version byte, expiry (8 bytes, unix nanoseconds, big
// endian), token (uvarint length + bytes), data.
type rec struct {
	token  string
	expiry time.Time
	data   []byte
}

func encode(r rec) []byte {
	b := make([]byte, 0, 1+8+2+len(r.token)+len(r.data))
	b = append(b, 1)
	b = binary.BigEndian.AppendUint64(b, uint64(r.expiry.UnixNano()))
	b = binary.AppendUvarint(b, uint64(len(r.token)))
	b = append(b, r.token...)
	return append(b, r.data...)
}

func decode(b []byte) (rec, bool) {
	if len(b) < 9 || b[0] != 1 {
		return rec{}, false
	}
	expiry := time.Unix(0, int64(binary.BigEndian.Uint64(b[1:9])))
	n, w := binary.Uvarint(b[9:])
	if w <= 0 || n > uint64(len(b)-9-w) {
		return rec{}, false
	}
	rest := b[9+w:]
	return rec{token: string(rest[:n]), expiry: expiry, data: rest[n:]}, true
}
