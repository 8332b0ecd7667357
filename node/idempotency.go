package node

// Idempotency keys for a web node's unsafe requests: a client (or the
// balancer) that did not get an answer sends the request again with the
// same Idempotency-Key, and gets the first answer instead of a second
// order, upload or payment.

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/internal/settle"
)

// Defaults of IdempotencyConfig.
const (
	DefaultIdempotencyBucket   = "jetfleet_idempotency"
	DefaultIdempotencyTTL      = 24 * time.Hour
	DefaultIdempotencyLease    = 10 * time.Second
	DefaultIdempotencyWait     = 30 * time.Second
	DefaultIdempotencyResponse = 256 << 10 // bytes of a stored response body
	DefaultIdempotencyMaxBytes = 256 << 20 // bytes of the whole bucket
	DefaultIdempotencyBodyHash = 64 << 20  // bytes of a request body in its fingerprint

	// MinIdempotencyLease is the shortest Lease: the marker is renewed
	// every third of it, each renewal a write to the bucket.
	MinIdempotencyLease = 300 * time.Millisecond
	// MaxIdempotencyLease is the longest: a retry of a request whose node
	// died waits for it.
	MaxIdempotencyLease = time.Hour
)

// Response headers the middleware sets.
const (
	// IdempotencyKeyHeader is the request header that carries the key.
	IdempotencyKeyHeader = "Idempotency-Key"
	// IdempotentReplayedHeader is "true" on a stored response sent again.
	IdempotentReplayedHeader = "Idempotent-Replayed"
	// IdempotentBodyOmittedHeader, on a replay, is the size of the first
	// response's body, which was too large to store and is not sent again.
	IdempotentBodyOmittedHeader = "Idempotent-Body-Omitted"
)

// IdempotencyConfig configures Idempotency. The zero value is the
// defaults.
type IdempotencyConfig struct {
	// Bucket is the KV bucket of the records. Default
	// DefaultIdempotencyBucket.
	Bucket string
	// Replicas of the bucket when it is created. Default 1.
	Replicas int
	// TTL is how long a record is kept after its last write: how long a
	// key can be replayed (JETFLEET_IDEMPOTENCY_TTL). Default 24h.
	TTL time.Duration
	// Lease is how long a request's "running" marker holds its key
	// without being renewed; the running node renews it every Lease/3, so
	// the marker of a node that died (kill -9) frees the key within Lease
	// (JETFLEET_IDEMPOTENCY_LEASE). Default 10s.
	Lease time.Duration
	// Wait is the longest a repeat waits for the first request, still
	// running elsewhere, before it gets 409 Conflict
	// (JETFLEET_IDEMPOTENCY_WAIT). Default 30s. Negative: 409 at once.
	Wait time.Duration
	// MaxResponseBytes is the most of a response body a record stores;
	// a larger body is not stored and a replay sends the status and
	// header only, with Idempotent-Body-Omitted
	// (JETFLEET_IDEMPOTENCY_MAX_RESPONSE). Default 256 KiB.
	MaxResponseBytes int
	// MaxBytes bounds the whole bucket (JETFLEET_IDEMPOTENCY_MAX_BYTES).
	// When it is full, keyed requests are served without a record (and
	// logged) rather than refused. Default 256 MiB.
	MaxBytes int64
	// MaxBodyHash is how much of a request body its fingerprint covers
	// (with the body's length up to there). Default 64 MiB.
	MaxBodyHash int64
	// Scope says whose keys a request's keys are. Default: the value of
	// the cookie named ScopeCookie and the Authorization header, so two
	// sessions (or credentials) never share a key: a user who signs in
	// again has a new session, and new keys. A request whose Scope is ""
	// (the default: neither the cookie nor Authorization) is served
	// without a record, as if it had no key.
	Scope func(*http.Request) string
	// ScopeCookie is the session cookie of the default Scope.
	ScopeCookie string
	// Logger logs takeovers, stores that failed and a full bucket.
	Logger zerolog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// withDefaults fills zero fields.
func (c IdempotencyConfig) withDefaults() IdempotencyConfig {
	c.Bucket = cmp.Or(c.Bucket, DefaultIdempotencyBucket)
	c.Replicas = max(c.Replicas, 1)
	c.TTL = cmp.Or(c.TTL, DefaultIdempotencyTTL)
	c.Lease = cmp.Or(c.Lease, DefaultIdempotencyLease)
	c.Wait = max(cmp.Or(c.Wait, DefaultIdempotencyWait), 0)
	c.MaxResponseBytes = cmp.Or(c.MaxResponseBytes, DefaultIdempotencyResponse)
	c.MaxBytes = cmp.Or(c.MaxBytes, DefaultIdempotencyMaxBytes)
	c.MaxBodyHash = cmp.Or(c.MaxBodyHash, DefaultIdempotencyBodyHash)
	if c.Scope == nil {
		cookie := c.ScopeCookie
		c.Scope = func(r *http.Request) string {
			var v string
			if c, err := r.Cookie(cookie); err == nil && cookie != "" {
				v = c.Value
			}
			auth := r.Header.Get("Authorization")
			if v == "" && auth == "" {
				return ""
			}
			return v + "\x00" + auth
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// IdempotencyConfigFromEnv reads JETFLEET_IDEMPOTENCY (off, false or 0
// turns the middleware off: on is false), JETFLEET_IDEMPOTENCY_TTL,
// _LEASE and _WAIT (durations such as 30s, or seconds),
// JETFLEET_IDEMPOTENCY_MAX_RESPONSE and _MAX_BYTES (bytes). A malformed
// value is an error naming it.
func IdempotencyConfigFromEnv(getenv func(string) string) (cfg IdempotencyConfig, on bool, err error) {
	switch v := strings.ToLower(strings.TrimSpace(getenv("JETFLEET_IDEMPOTENCY"))); v {
	case "", "on", "true", "1":
		on = true
	case "off", "false", "0":
	default:
		return cfg, false, fmt.Errorf("JETFLEET_IDEMPOTENCY=%q: want on or off", v)
	}
	for key, dst := range map[string]*time.Duration{
		"JETFLEET_IDEMPOTENCY_TTL": &cfg.TTL, "JETFLEET_IDEMPOTENCY_LEASE": &cfg.Lease, "JETFLEET_IDEMPOTENCY_WAIT": &cfg.Wait,
	} {
		if *dst, err = envDuration(getenv, key); err != nil {
			return cfg, false, err
		}
	}
	if cfg.TTL < 0 || cfg.Lease < 0 { // envDuration's "none"
		return cfg, false, errors.New("JETFLEET_IDEMPOTENCY_TTL and JETFLEET_IDEMPOTENCY_LEASE cannot be 0 (unset them for the defaults, 24h and 10s)")
	}
	if cfg.Lease > 0 && (cfg.Lease < MinIdempotencyLease || cfg.Lease > MaxIdempotencyLease) {
		return cfg, false, fmt.Errorf("JETFLEET_IDEMPOTENCY_LEASE=%s: want %s to %s (it is renewed every third of it, and a dead node's key is free after it)", cfg.Lease, MinIdempotencyLease, MaxIdempotencyLease)
	}
	resp, err := envBytes(getenv, "JETFLEET_IDEMPOTENCY_MAX_RESPONSE")
	if err != nil {
		return cfg, false, err
	}
	cfg.MaxResponseBytes = int(resp)
	cfg.MaxBytes, err = envBytes(getenv, "JETFLEET_IDEMPOTENCY_MAX_BYTES")
	return cfg, on, err
}

// envBytes reads key as a positive number of bytes, 0 when unset.
func envBytes(getenv func(string) string, key string) (int64, error) {
	v := strings.TrimSpace(getenv(key))
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 || n > 1<<40 {
		return 0, fmt.Errorf("%s=%q: want a positive number of bytes", key, v)
	}
	return n, nil
}

// Idempotency is the middleware of Idempotency-Key: see Middleware.
type Idempotency struct {
	cfg   IdempotencyConfig
	kv    jetstream.KeyValue
	owner string
}

// NewIdempotency opens the records' bucket, creating it when it is
// missing (an existing bucket is used as it is). What a settling cluster
// answers (no answer while it elects the bucket's leader, as right after
// `jetfleet up --replicas 3` made it; a peer not heard from yet) is tried
// again, for up to bucketSettle or until ctx ends.
func NewIdempotency(ctx context.Context, js jetstream.JetStream, cfg IdempotencyConfig) (*Idempotency, error) {
	cfg = cfg.withDefaults()
	if cfg.MaxResponseBytes < 0 || cfg.MaxBytes < 0 || cfg.Lease < 0 || cfg.TTL < 0 {
		return nil, errors.New("node: IdempotencyConfig: sizes and durations cannot be negative")
	}
	if cfg.Lease < MinIdempotencyLease || cfg.Lease > MaxIdempotencyLease {
		return nil, fmt.Errorf("node: IdempotencyConfig: Lease %s: want %s to %s", cfg.Lease, MinIdempotencyLease, MaxIdempotencyLease)
	}
	ctx, cancel := context.WithTimeout(ctx, bucketSettle)
	defer cancel()
	var kv jetstream.KeyValue
	err := settle.Retry(ctx, bucketAttempt, func(ctx context.Context) (err error) {
		kv, err = openIdempotencyBucket(ctx, js, cfg)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("node: idempotency bucket %s: %w", cfg.Bucket, err)
	}
	host, _ := os.Hostname()
	return &Idempotency{cfg: cfg, kv: kv, owner: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), rand.Text()[:8])}, nil
}

// ProvisionIdempotency creates the records' bucket as cfg says (its
// replicas, size and TTL), or updates an existing one to it. The
// deployment step that owns the topology calls it (`jetfleet up
// --replicas 3`), so that web nodes started later find the bucket
// replicated: NewIdempotency creates a missing bucket with the node's
// replicas and never changes one.
func ProvisionIdempotency(ctx context.Context, js jetstream.JetStream, cfg IdempotencyConfig) error {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, bucketSettle)
	defer cancel()
	err := settle.Retry(ctx, bucketAttempt, func(ctx context.Context) error {
		_, err := js.CreateOrUpdateKeyValue(ctx, idempotencyBucketConfig(cfg))
		return err
	})
	if err != nil {
		return fmt.Errorf("node: idempotency bucket %s: %w", cfg.Bucket, err)
	}
	return nil
}

// How long NewIdempotency tries in all, and each try.
const (
	bucketSettle  = 30 * time.Second
	bucketAttempt = 2 * time.Second
)

func openIdempotencyBucket(ctx context.Context, js jetstream.JetStream, cfg IdempotencyConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cfg.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = js.CreateKeyValue(ctx, idempotencyBucketConfig(cfg))
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = js.KeyValue(ctx, cfg.Bucket)
		}
	}
	return kv, err
}

// idempotencyBucketConfig is the bucket: file storage, one value per key,
// every key expiring TTL after its last write, bounded in bytes and in
// value size.
func idempotencyBucketConfig(cfg IdempotencyConfig) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:       cfg.Bucket,
		Description:  "jetfleet idempotency keys: a running marker or a stored response per (user, Idempotency-Key), sealed",
		History:      1,
		TTL:          cfg.TTL,
		MaxBytes:     cfg.MaxBytes,
		MaxValueSize: int32(min(cfg.MaxResponseBytes+256<<10, 1<<30)),
		Storage:      jetstream.FileStorage,
		Replicas:     cfg.Replicas,
	}
}

// safeMethods never take a key: they change nothing.
func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions || m == http.MethodTrace
}

// Middleware makes next's unsafe requests (POST, PUT, PATCH, DELETE...)
// that carry an Idempotency-Key run at most once per key and scope:
//
//   - the first request runs, holding a "running" marker renewed every
//     Lease/3; its response (status, header, body up to
//     MaxResponseBytes) is stored, sealed, for TTL. A 5xx, 408 or 429
//     response is not stored: the key is freed and a retry runs again.
//   - a repeat gets the stored response with Idempotent-Replayed: true,
//     and next does not run.
//   - a repeat while the first runs waits for it (up to Wait), then gets
//     its response; after Wait it gets 409 Conflict with Retry-After
//     (the lease, in seconds). When
//     the first's node died, its marker lapses within Lease and the
//     waiting repeat runs the request itself.
//   - a key reused for another method, path or body gets 422.
//   - a malformed key gets 400 naming what is wrong.
//   - a store that cannot be reached gets 503 with Retry-After: the
//     request did not run.
//
// Requests without the header, and safe methods, pass through.
func (m *Idempotency) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		values := r.Header.Values(IdempotencyKeyHeader)
		if len(values) == 0 || safeMethod(r.Method) {
			next.ServeHTTP(w, r)
			return
		}
		key, msg := checkKey(values)
		if msg != "" {
			refuse(w, r, msg, http.StatusBadRequest)
			return
		}
		scope := m.cfg.Scope(r)
		if scope == "" {
			// Nobody to keep the key for: anonymous clients would share
			// it (and one get another's response), and could fill the
			// bucket.
			next.ServeHTTP(w, r)
			return
		}
		keys, err := deriveKeys(scope, key)
		if err != nil {
			refuse(w, r, "idempotency: "+err.Error(), http.StatusInternalServerError)
			return
		}
		m.serve(w, r, keys, next)
	})
}

// serve takes the key or answers from its record.
func (m *Idempotency) serve(w http.ResponseWriter, r *http.Request, keys idemKeys, next http.Handler) {
	t, err := m.acquire(r.Context(), r, keys)
	switch {
	case errors.Is(err, errStoreFull):
		m.cfg.Logger.Error().Ctx(r.Context()).Err(err).Str("path", r.URL.Path).Msg("idempotency bucket full: serving a keyed request without a record")
		next.ServeHTTP(w, r)
	case err != nil:
		m.unavailable(w, r, err)
	case t.replay != nil:
		m.replay(w, r, t.replay)
	case t.conflict != "":
		if t.status == http.StatusConflict {
			w.Header().Set("Retry-After", strconv.Itoa(max(1, int(m.cfg.Lease.Seconds()))))
		}
		refuse(w, r, t.conflict, t.status)
	default:
		m.run(w, r, keys, t.rev, next)
	}
}

// unavailable answers a request whose key could not be checked: the
// request did not run, so a retry is safe.
func (m *Idempotency) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client left
	}
	m.cfg.Logger.Warn().Ctx(r.Context()).Err(err).Str("path", r.URL.Path).Msg("idempotency store unavailable; request refused, not run")
	w.Header().Set("Retry-After", "1")
	refuse(w, r, "idempotency store unavailable, the request did not run; retry with the same key: "+err.Error(), http.StatusServiceUnavailable)
}

// replay sends a stored response again, once the repeat's body matches
// the first's.
func (m *Idempotency) replay(w http.ResponseWriter, r *http.Request, rec *idemRecord) {
	same, err := matches(rec.Fingerprint, w, r)
	if err != nil {
		refuse(w, r, "reading the request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if !same {
		refuse(w, r, "Idempotency-Key was already used with a different request body", http.StatusUnprocessableEntity)
		return
	}
	h := w.Header()
	for k, v := range rec.Header {
		h[k] = v
	}
	h.Set(IdempotentReplayedHeader, "true")
	if rec.Omitted > 0 {
		h.Set(IdempotentBodyOmittedHeader, strconv.FormatInt(rec.Omitted, 10))
	}
	h.Set("Content-Length", strconv.Itoa(len(rec.Body)))
	w.WriteHeader(rec.Status)
	_, _ = w.Write(rec.Body)
}

// running is a "running" record of r held until now + Lease.
func (m *Idempotency) running(r *http.Request) *idemRecord {
	return &idemRecord{State: stateRunning, Method: r.Method, Path: r.URL.RequestURI(), Owner: m.owner,
		LeaseUntil: m.cfg.Now().Add(m.cfg.Lease)}
}

// refuse answers a keyed request the middleware does not run: as JSON,
// {"error": msg}, to a client that sent or accepts JSON (an API's
// clients read their errors there), else as text.
func refuse(w http.ResponseWriter, r *http.Request, msg string, status int) {
	if !strings.Contains(r.Header.Get("Content-Type"), "json") && !strings.Contains(r.Header.Get("Accept"), "json") {
		http.Error(w, msg, status)
		return
	}
	body, _ := json.Marshal(map[string]string{"error": msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
