package sessions

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetfleet/jetfleet/sessions/internal/bucket"
)

// Errors callers can branch on with errors.Is.
var (
	// ErrConfig wraps every configuration error.
	ErrConfig = errors.New("sessions: bad configuration")
	// ErrNoSession is returned when the context carries no session: the
	// handler is not wrapped with Manager.Middleware.
	ErrNoSession = errors.New("sessions: no session in this context; wrap the handler with Manager.Middleware")
	// ErrCommitted is returned when a session is changed after the response
	// header was written: the session is saved just before the header goes
	// out, so later changes could not be saved.
	ErrCommitted = errors.New("sessions: the response header is already written; change the session before writing the response")
	// ErrUnsupportedType is returned by Put and Flash for a value the codec
	// cannot store exactly, and by Register for a bad registration.
	ErrUnsupportedType = errors.New("sessions: unsupported value type")
	// ErrTooLarge is returned when an encoded session exceeds the NATS
	// server's max_payload. The stored session is left as it was.
	ErrTooLarge = errors.New("sessions: session too large")
	// ErrUnavailable wraps failures to reach NATS or the bucket.
	ErrUnavailable = errors.New("sessions: session store unavailable")
	// ErrSessionGone reports that a concurrent request destroyed the
	// session (or renewed its token) after this request loaded it; this
	// request's changes were discarded so the destroy stays in force.
	ErrSessionGone = errors.New("sessions: session destroyed or renewed by a concurrent request; this request's changes were discarded")
	// ErrConflict is returned when a save still conflicts after MaxRetries
	// reloads.
	ErrConflict = errors.New("sessions: too many concurrent writes to one session")
)

// Manager loads and saves sessions in a JetStream KV bucket. It keeps no
// session state of its own, so any number of nodes can share a bucket and
// serve any request. It is safe for concurrent use.
type Manager struct {
	cfg   Config
	nc    *nats.Conn
	kv    jetstream.KeyValue
	types *registry
	wire  wire
	// copy is this node's copy of the bucket; nil when Config.LocalCopy
	// is negative.
	copy     *localCopy
	stopCopy context.CancelFunc
	// tracer starts the store's spans; nil when tracing is off (tracing.go).
	tracer trace.Tracer
}

// setupTimeout bounds New.
const setupTimeout = 30 * time.Second

// New is NewContext with a 30-second deadline.
func New(js jetstream.JetStream, cfg Config) (*Manager, error) {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	return NewContext(ctx, js, cfg)
}

// NewContext checks cfg, creates the bucket when it does not exist (or
// brings its TTL and replica count in line with cfg), and returns a
// Manager. The bucket is created with direct gets on (any replica
// answers); the revision cookie tells when an answer is older than what
// the client has seen (see Config.LocalCopy and the package docs). Unless
// Config.LocalCopy is negative, the Manager starts a KV watch that keeps
// its copy of the bucket until Close or until the connection closes.
// JetStream requests that time out (a cluster still electing leaders) are
// retried until ctx ends.
func NewContext(ctx context.Context, js jetstream.JetStream, cfg Config) (*Manager, error) {
	if js == nil {
		return nil, fmt.Errorf("%w: nil JetStream", ErrConfig)
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	kv, err := bucket.Open(ctx, js, bucket.Spec{
		Name:        cfg.Bucket,
		Description: "jetfleet HTTP sessions (keys are SHA-256 of session tokens)",
		Replicas:    cfg.Replicas,
		TTL:         cfg.IdleTimeout,
		AllowDirect: true,
		MaxBytes:    cfg.MaxBytes,
	})
	if apiErr := (*jetstream.APIError)(nil); errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeNoStorage {
		return nil, fmt.Errorf("sessions: the NATS server has no room to reserve the bucket's bound of %d bytes (Config.MaxBytes, SESSION_MAX_BYTES): lower it or give the server more storage: %w", cfg.MaxBytes, err)
	}
	if err != nil {
		return nil, fmt.Errorf("sessions: %w", err)
	}
	m := &Manager{cfg: cfg, nc: js.Conn(), kv: kv, types: newRegistry(), tracer: tracerFor(cfg.TracerProvider),
		wire: newWire(js, cfg.Bucket), stopCopy: func() {}}
	if cfg.LocalCopy > 0 {
		m.copy = newLocalCopy(cfg.LocalCopy, cfg.IdleTimeout)
		wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		if err := m.copy.follow(wctx, kv, m.wire.firstSeq); err != nil {
			cancel()
			return nil, fmt.Errorf("sessions: watch bucket %q: %w", cfg.Bucket, err)
		}
		m.stopCopy = cancel
	}
	return m, nil
}

// Close stops the watch that keeps this node's copy of the bucket; later
// loads all ask NATS. The NATS connection is the caller's and stays open.
func (m *Manager) Close() { m.stopCopy() }

// Register lets m store values of type T under name, encoded as JSON
// (exported fields only). The name, not the Go type path, is stored, so
// types can move between packages; every node must register the same
// names. Register before serving requests.
func Register[T any](m *Manager, name string) error {
	return m.types.register(reflect.TypeFor[T](), name)
}

// Check reports whether the NATS connection is up and the bucket answers
// with a leader, so that it would take writes, for a /up or readiness
// endpoint. The error wraps ErrUnavailable.
func (m *Manager) Check(ctx context.Context) error {
	if err := m.connected(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.cfg.StoreTimeout)
	defer cancel()
	st, err := m.kv.Status(ctx)
	if err != nil {
		return fmt.Errorf("%w: bucket %q: %w", ErrUnavailable, m.cfg.Bucket, err)
	}
	return leaderOf(st, m.cfg.Bucket)
}

// leaderOf fails when the bucket is replicated and has no leader. A server
// that holds a replica answers for a bucket that has been leaderless for a
// while, so an answer alone does not mean that writes would succeed.
func leaderOf(st jetstream.KeyValueStatus, bucket string) error {
	s, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok {
		return nil
	}
	if c := s.StreamInfo().Cluster; c != nil && c.Name != "" && c.Leader == "" {
		return fmt.Errorf("%w: bucket %q has no leader (no quorum of its replicas)", ErrUnavailable, bucket)
	}
	return nil
}

func (m *Manager) connected() error {
	if st := m.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("%w: NATS connection is %s", ErrUnavailable, st)
	}
	return nil
}

func (m *Manager) now() time.Time { return m.cfg.Now() }

// log reports an error the middleware handled for r to Config.Logger.
func (m *Manager) log(r *http.Request, msg string, err error) {
	m.cfg.Logger.Warn().Ctx(r.Context()).Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg(msg)
}

func defaultErrorHandler(w http.ResponseWriter, _ *http.Request, err error) {
	if errors.Is(err, ErrUnavailable) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, "503 Service Unavailable: the session store (NATS) did not answer in time; try again shortly", http.StatusServiceUnavailable)
		return
	}
	msg := "500 Internal Server Error: the session could not be saved"
	if errors.Is(err, ErrTooLarge) {
		msg = "500 Internal Server Error: the session is too large to save"
	}
	http.Error(w, msg, http.StatusInternalServerError)
}
