// Package workers runs jobs from jetfleet's queues: a handler registry,
// a strict-priority (or weighted) fetch loop sized to free slots (and,
// for quick handlers, about a millisecond of work beyond them), retries
// with backoff, timeouts with heartbeats, panic recovery, dead-lettering,
// middleware and a graceful drain; fleet-wide concurrency caps and rate
// limits (MaxConcurrent, MaxConcurrentBy, RateLimit, RateLimitBy) held as
// leases in a NATS KV bucket, and Release, which runs a job again later
// without using a try.
//
// Any number of worker processes, on any number of machines, share one
// durable JetStream consumer per queue, so a fleet grows by starting more
// processes. Delivery is at least once: a job can run again after a crash
// or a lost acknowledgement, so handlers must be idempotent. Use the job's
// ID (job.ID) as the idempotency key, for example as a unique key in the
// table the job writes to.
//
// # Dead-letter hooks
//
// A job that fails for good goes to the DLQ stream, whatever the way: its
// handler's error after its last try, Permanent, a panic or a timeout on
// the last try, a body that does not decode, malformed headers, a kind no
// handler of the worker takes, or a last attempt interrupted by a crash
// (dead-lettered unrun on its next delivery). The application can react
// to each with a hook: OnDeadLetter, a HandlerOption, for one kind with
// its arguments decoded, and Config.OnDeadLetter for every job of the
// worker, with the raw bus.Job. They run:
//
//   - after the DLQ stream has acknowledged the dead letter, and before
//     the original is removed from its queue (Term). The kind's hook runs
//     first, then Config.OnDeadLetter; the next one runs only when the
//     previous one returned nil;
//   - with reason, the text stored as the letter's Jetfleet-Error, and a
//     context that ends after the job's timeout or a minute, whichever is
//     longer (or when a drain's grace runs out); heartbeats keep the job
//     owned while they run;
//   - at least once. When a hook returns an error (or panics), the job is
//     handed back to its queue after its backoff; when the worker dies
//     before the Term, the job is delivered again after AckWait. Either
//     way its next delivery finds its dead letter in DLQ (one direct get by
//     the job's ID, matched by its JOBS sequence), runs the hooks again
//     with the stored reason, and does not run the handler again; the dead
//     letter is not stored twice. Hooks must therefore be idempotent, and
//     a hook that always fails keeps its job coming back, with its backoff,
//     until it succeeds.
//
// A body that does not decode gives the kind's hook what json.Unmarshal
// could fill (nothing for a syntax error); job.Body holds the raw bytes.
// A message without JetStream metadata is terminated without a dead
// letter and without hooks.
package workers

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetfleet/jetfleet/bus"
)

// Config holds a worker's settings. The zero value of each field means its
// documented default. Tries, Timeout and Backoff are defaults: a job's own
// settings (dispatch options or Jetfleet-* headers) win over a handler's
// (HandlerTries...), which win over these.
type Config struct {
	// Queues to take jobs from, highest priority first. In strict mode
	// (plain names) a job of a later queue starts only when no job of an
	// earlier queue is ready: later queues can starve while earlier ones
	// stay busy. Give weights ("high:6", "default:3", "low:1") for weighted
	// mode: each fetch picks queues in a random order biased by weight, so
	// every queue progresses in proportion. Default: ["default"].
	Queues []string
	// Concurrency is how many jobs run at once in this process. Default 10.
	Concurrency int
	// Tries is how many deliveries a job may use. Default 3.
	Tries int
	// Timeout bounds one attempt; the handler's context ends then. Default 60s.
	Timeout time.Duration
	// Backoff is the delay before each retry; the last value repeats.
	// Default: exponential from 1s, doubling to at most 10m, ±25% jitter.
	Backoff []time.Duration
	// Grace is how long a drain lets running jobs finish before handing
	// them back to the queue. Default 30s.
	Grace time.Duration
	// MaxJobs stops the worker after it has finished this many jobs
	// (Laravel's --max-jobs). Default 0: no limit.
	MaxJobs int
	// MaxTime stops the worker after it has run this long. Default 0: no limit.
	MaxTime time.Duration
	// StopWhenEmpty stops the worker once its queues have no ready job and
	// nothing runs.
	StopWhenEmpty bool
	// Bus holds the topology settings used to provision the queues'
	// consumers (AckWait, replicas...).
	Bus bus.Config
	// Middleware wraps every handler, first one outermost.
	Middleware []Middleware
	// OnOutcome, when set, is called with the queue, kind and outcome of
	// every delivery once it is settled with the server (a Middleware sees
	// an attempt's error, but not whether it was retried or
	// dead-lettered). It runs on the job's goroutine: keep it quick; it
	// must be safe for concurrent use. Default: nil.
	OnOutcome func(queue, kind string, o Outcome)
	// Logger receives the worker's logs: start and stop, pauses, fetch and
	// presence failures, and each job's outcome (succeeded at info, retried
	// at warn, dead-lettered at error) with its ID, queue, kind and attempt.
	// The zero value logs nothing.
	Logger zerolog.Logger
	// OnDeadLetter, when set, runs for every job this worker dead-letters,
	// of any kind, including kinds it has no handler for and jobs whose
	// subject or headers do not parse: after the kind's own hook
	// (OnDeadLetter handler option), once DLQ holds the letter and before
	// the original is removed. An error hands the job back to run the
	// hooks again later. See "Dead-letter hooks" in the package
	// documentation. It must be safe for concurrent use. Default: nil.
	OnDeadLetter func(ctx context.Context, job *bus.Job, reason string) error
	// PresenceInterval is how often the worker writes its presence record
	// (queues, running jobs, counts) to bus.WorkersBucket for `jetfleet
	// queue stats`. Default 5s; at most 10s, so that the record outlives two missed writes
	// (bus.WorkerRecordTTL is 30s).
	PresenceInterval time.Duration
	// StuckAfter is how long one turn of the fetch loop (pulling ready
	// jobs and handing them to the job goroutines, normally milliseconds)
	// may take before Live reports the loop stuck. Default
	// DefaultStuckAfter (1 minute); less than MinStuckAfter (10s) is
	// raised to it.
	StuckAfter time.Duration
	// TracerProvider starts the span of each job attempt, a child of the
	// job's traceparent (tracing.go). Default: the OpenTelemetry global
	// provider, a no-op unless the program sets one; with the no-op
	// provider no span is started.
	TracerProvider trace.TracerProvider
	// SlotLease is how long a slot of a fleet-wide concurrency cap
	// (MaxConcurrent, MaxConcurrentBy) outlives a worker that stops
	// renewing it (it renews every third of it): a worker killed while
	// holding slots loses them within this time. Leases are compared
	// with the workers' clocks: keep them in sync (NTP). Default 15s; at
	// least 1s.
	SlotLease time.Duration
	// MaxWaiting bounds the fetched jobs this process holds while they
	// wait for a concurrency slot or a rate token; beyond it a job is
	// released to come back about when its turn would come. Default
	// 4×Concurrency, at least 100.
	MaxWaiting int
}

func (c Config) withDefaults() Config {
	if len(c.Queues) == 0 {
		c.Queues = []string{"default"}
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 10
	}
	if c.Tries <= 0 {
		c.Tries = 3
	}
	if c.Timeout <= 0 {
		c.Timeout = 60 * time.Second
	}
	if c.Grace <= 0 {
		c.Grace = 30 * time.Second
	}
	if c.PresenceInterval <= 0 {
		c.PresenceInterval = 5 * time.Second
	}
	c.PresenceInterval = min(c.PresenceInterval, bus.MaxPresenceInterval)
	if c.StuckAfter <= 0 {
		c.StuckAfter = DefaultStuckAfter
	}
	c.StuckAfter = max(c.StuckAfter, MinStuckAfter)
	return c
}

// HandlerFunc runs one job; it is what Middleware wraps.
type HandlerFunc func(ctx context.Context, job *bus.Job) error

// Middleware wraps a handler for logging, metrics or tracing.
type Middleware func(next HandlerFunc) HandlerFunc

// Job is one delivery of a job with arguments of type T.
type Job[T bus.Args] struct {
	*bus.Job
	// Args is the decoded body.
	Args T

	run *jobRun // the attempt, for Progress and SetResult
}

// HandlerOption sets a per-kind default.
type HandlerOption func(*handler)

// HandlerTries sets the tries for this kind's jobs that do not set their own.
func HandlerTries(n int) HandlerOption { return func(h *handler) { h.tries = n } }

// HandlerTimeout sets the timeout for this kind's jobs that do not set their own.
func HandlerTimeout(d time.Duration) HandlerOption { return func(h *handler) { h.timeout = d } }

// HandlerBackoff sets the retry delays for this kind's jobs that do not set their own.
func HandlerBackoff(delays ...time.Duration) HandlerOption {
	return func(h *handler) { h.backoff = delays }
}

// OnDeadLetter sets fn as the hook run when a job of T's kind is
// dead-lettered, whatever the reason (see "Dead-letter hooks" in the
// package documentation): once DLQ holds the letter and before the
// original is removed; at least once; an error hands the job back to run
// the hook again later. job.Args holds what the body decodes to: when the
// body does not decode into T (the reason then says so), the fields that
// could be filled, job.Body the raw bytes. Give it to Register for the
// same T; Register panics when T's kind is another's.
func OnDeadLetter[T bus.Args](fn func(ctx context.Context, job *Job[T], reason string) error) HandlerOption {
	var zero T
	return func(h *handler) {
		h.deadKind = zero.Kind()
		h.dead = func(ctx context.Context, j *bus.Job, reason string) error {
			job := &Job[T]{Job: j}
			_ = json.Unmarshal(j.Body, &job.Args) // a body that does not decode gives what it can
			return fn(ctx, job, reason)
		}
	}
}

// deadHook is a dead-letter hook on the raw job.
type deadHook func(ctx context.Context, job *bus.Job, reason string) error

type handler struct {
	run     HandlerFunc
	wrapped HandlerFunc // run in the middleware, set by Run
	tries   int
	timeout time.Duration
	backoff []time.Duration
	// dead is the kind's dead-letter hook, set by OnDeadLetter for the
	// kind deadKind.
	dead     deadHook
	deadKind string
	limits   []*limitSpec // fleet-wide limits (limits.go)
}

// Worker takes jobs from its queues and runs the registered handlers.
type Worker struct {
	js       jetstream.JetStream
	cfg      Config
	queues   []queue
	weighted bool
	handlers map[string]*handler
	log      zerolog.Logger
	tracer   trace.Tracer // nil: tracing off (tracing.go)
	// spanStart is an attempt span's start options, made once: made per
	// attempt, they were an allocation per job.
	spanStart []trace.SpanStartOption
	health    health // for Live and Ready (health.go)
	// started is set by Run: handlers are registered before it, since
	// running jobs read them without a lock.
	started atomic.Bool
	// storeRetriesFrom is storeRetriesFrom (release.go); tests shorten it.
	storeRetriesFrom time.Duration
}

// New returns a worker; register handlers, then call Run. A bad queue list
// is reported by Run.
func New(js jetstream.JetStream, cfg Config) *Worker {
	cfg = cfg.withDefaults()
	return &Worker{js: js, cfg: cfg, handlers: map[string]*handler{}, log: cfg.Logger, tracer: tracerFor(cfg.TracerProvider),
		spanStart: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}, storeRetriesFrom: storeRetriesFrom}
}

// Register adds fn as the handler of T's kind. A body that does not decode
// into T fails the job permanently with the decode error as the reason. It
// panics when the kind is invalid or already registered, when Run has
// started, when HandlerTries or HandlerTimeout is negative, or a limit
// option is invalid (a limit below 1, a rate period under 1ms, a nil key
// function, two caps), as http.Handle does for a duplicate pattern: all
// are programming errors.
func Register[T bus.Args](w *Worker, fn func(ctx context.Context, job *Job[T]) error, opts ...HandlerOption) {
	var zero T
	kind := zero.Kind()
	if err := bus.ValidateName("kind", kind); err != nil {
		panic(fmt.Sprintf("workers: Register: %v", err))
	}
	if w.started.Load() {
		panic(fmt.Sprintf("workers: Register(%s) after Run: register every handler before Run starts", kind))
	}
	if _, dup := w.handlers[kind]; dup {
		panic(fmt.Sprintf("workers: Register: kind %q is already registered", kind))
	}
	h := &handler{run: decodeAndRun(fn)}
	for _, o := range opts {
		o(h)
	}
	if h.dead != nil && h.deadKind != kind {
		panic(fmt.Sprintf("workers: Register: OnDeadLetter for kind %q given to the handler of kind %q", h.deadKind, kind))
	}
	if h.tries < 0 || h.timeout < 0 {
		panic(fmt.Sprintf("workers: Register(%s): HandlerTries is %d and HandlerTimeout %s; neither may be negative (0: the worker's)", kind, h.tries, h.timeout))
	}
	if err := h.checkLimits(kind); err != nil {
		panic(err.Error())
	}
	w.handlers[kind] = h
}

func decodeAndRun[T bus.Args](fn func(context.Context, *Job[T]) error) HandlerFunc {
	return func(ctx context.Context, j *bus.Job) error {
		job := &Job[T]{Job: j, run: runFrom(ctx)}
		if err := json.Unmarshal(j.Body, &job.Args); err != nil {
			return Permanent(fmt.Errorf("body does not decode into %T: %w", job.Args, err))
		}
		return fn(ctx, job)
	}
}

// Kinds lists the registered kinds, sorted.
func (w *Worker) Kinds() []string {
	return slices.Sorted(maps.Keys(w.handlers))
}
