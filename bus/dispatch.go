package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// Args is a job's typed arguments. Kind names the handler that runs it
// ([a-z0-9_-]+); the value is sent as its JSON encoding.
type Args interface {
	Kind() string
}

// Option sets one of a job's dispatch options.
type Option func(*options)

type options struct {
	queue   string
	id      string
	tries   int
	triesOK bool // Tries was called, so 0 is an error rather than "unset"
	timeout time.Duration
	backoff []time.Duration
	at      time.Time
	delay   time.Duration
	tags    []string
	unique  *uniqueSpec // Unique (unique.go)
}

// OnQueue puts the job on queue instead of Config.DefaultQueue.
func OnQueue(queue string) Option { return func(o *options) { o.queue = queue } }

// Tries caps the job's deliveries (≥ 1), overriding the worker's default.
func Tries(n int) Option { return func(o *options) { o.tries, o.triesOK = n, true } }

// Timeout bounds each attempt, overriding the worker's default.
func Timeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// Backoff sets the delays before each retry; the last one repeats.
func Backoff(delays ...time.Duration) Option { return func(o *options) { o.backoff = delays } }

// Delay makes the job ready only after d, using JetStream's scheduler.
func Delay(d time.Duration) Option { return func(o *options) { o.delay = d } }

// At makes the job ready only at t, using JetStream's scheduler.
func At(t time.Time) Option { return func(o *options) { o.at = t } }

// JobID sets the job's ID: at most 256 bytes of UTF-8, no control character
// (ValidateJobID); a dispatch with another is refused with an error
// wrapping ErrInvalid. Dispatching the same ID again within
// Config.DuplicateWindow stores nothing new (dedupe). Default: a random ID.
func JobID(id string) Option { return func(o *options) { o.id = id } }

// Dispatcher enqueues jobs. It is safe for concurrent use. The JOBS stream
// must exist (Provision, or a running `jetfleet up` / `jetfleet work`).
// The first time a Dispatcher sends a job to a queue, it creates the
// queue's consumer when it is missing (one request per queue and process),
// so a job sent to a queue no worker has served yet is still counted by
// `jetfleet queue stats`, `queue monitor` and the dashboard.
type Dispatcher struct {
	js     jetstream.JetStream
	cfg    Config
	tracer trace.Tracer // nil: tracing off (trace.go)
	// spanStart is a dispatch span's start options, made once: made per
	// dispatch, they were an allocation per job.
	spanStart []trace.SpanStartOption
	// ensured are the queues whose consumer it made sure of.
	ensured ensuredQueues
	// batchReady: JOBS was made ready for batches (batch.go).
	batchReady batchReady
	// unique is UniqueBucket, opened on the first unique dispatch (unique.go).
	unique uniqueLocks
	// uniqueGrace is how young a key is never taken over (default
	// clearGrace; tests shorten it).
	uniqueGrace time.Duration
}

// NewDispatcher returns a Dispatcher publishing through js.
func NewDispatcher(js jetstream.JetStream, cfg Config) (*Dispatcher, error) {
	if js == nil {
		return nil, errors.New("bus: NewDispatcher needs a JetStream context")
	}
	cfg = cfg.withDefaults()
	if err := wire.ValidateName("queue", cfg.DefaultQueue); err != nil {
		return nil, fmt.Errorf("bus: Config.DefaultQueue: %w", err)
	}
	return &Dispatcher{js: js, cfg: cfg, tracer: tracerFor(cfg.TracerProvider),
		spanStart: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindProducer)}}, nil
}

// Dispatch enqueues args as a job and returns its ID once JetStream has
// acknowledged storing it. With Unique, a key held by another job stores
// nothing and fails with a *DuplicateError (errors.Is ErrDuplicate) that
// names the holder. On an error the ID is "", but for ErrNotAcknowledged:
// the job may be stored under the ID returned with it, and dispatching it
// again with that ID (JobID) stores it at most once.
func (d *Dispatcher) Dispatch(ctx context.Context, args Args, opts ...Option) (string, error) {
	msg, id, err := d.encode(ctx, args, opts)
	if err != nil {
		return "", err
	}
	return idAfter(id, d.publishTraced(ctx, msg, id, opts))
}

// DispatchJSON enqueues a job of kind whose arguments are already JSON, as
// other languages and the CLI send them.
func (d *Dispatcher) DispatchJSON(ctx context.Context, kind string, body []byte, opts ...Option) (string, error) {
	msg, id, err := d.build(ctx, kind, body, opts)
	if err != nil {
		return "", err
	}
	return idAfter(id, d.publishTraced(ctx, msg, id, opts))
}

// idAfter is what a dispatch returns: the job's ID when it is stored, or
// may be (ErrNotAcknowledged); "" with any other error, when it is not.
func idAfter(id string, err error) (string, error) {
	if err != nil && !errors.Is(err, ErrNotAcknowledged) {
		return "", err
	}
	return id, err
}

// DispatchManyParams is one job of a DispatchMany batch: what Dispatch
// takes as its arguments and options.
type DispatchManyParams struct {
	// Args are the job's typed arguments.
	Args Args
	// Opts are the job's dispatch options, as Dispatch takes them.
	Opts []Option
}

// BatchError reports which jobs of a DispatchMany batch were not stored.
// Errs is aligned with the batch; a nil entry was stored.
type BatchError struct {
	Errs   []error
	Failed int
}

func (e *BatchError) Error() string {
	for _, err := range e.Errs {
		if err != nil {
			return fmt.Sprintf("bus: %d of %d jobs not dispatched; first: %v", e.Failed, len(e.Errs), err)
		}
	}
	return "bus: no job failed"
}

// Unwrap returns the individual errors.
func (e *BatchError) Unwrap() []error { return e.Errs }

// DispatchMany enqueues jobs with asynchronous publishes and waits for every
// acknowledgement. ids is aligned with jobs; when some fail, err is a
// *BatchError saying which, and the IDs of the others are still returned.
//
// A batch larger than the JetStream context's limit of outstanding async
// publishes (4000 by default) is sent in a sliding window: when a publish
// stalls on that limit, the oldest acknowledgements of the batch are awaited
// and the publish is tried again (a stalled publish was never sent, so this
// stores nothing twice).
func (d *Dispatcher) DispatchMany(ctx context.Context, jobs ...DispatchManyParams) ([]string, error) {
	ids := make([]string, len(jobs))
	errs := make([]error, len(jobs))
	msgs := make([]*nats.Msg, len(jobs))
	// unlocks free the unique keys taken for jobs that were not stored (unique.go).
	unlocks := make([]func(error), len(jobs))
	ctx, span := d.startBatch(ctx, len(jobs))
	for i, p := range jobs {
		msgs[i], ids[i], errs[i] = d.encode(ctx, p.Args, p.Opts)
		if errs[i] == nil {
			errs[i] = d.injectBatch(ctx, msgs[i])
		}
		if errs[i] == nil {
			unlocks[i], errs[i] = d.lockUnique(ctx, msgs[i], ids[i], p.Opts)
		}
		if errs[i] != nil {
			msgs[i], ids[i] = nil, ""
		}
	}
	d.publishAll(ctx, msgs, errs)
	for i, unlock := range unlocks {
		if unlock != nil {
			unlock(errs[i])
		}
	}
	err := batchError(errs)
	endSpan(span, err)
	return ids, err
}

// publishAll publishes msgs (nil ones are skipped) with asynchronous
// publishes in a sliding window, indexes the tags of those stored, and
// records each one's outcome in errs, which is aligned with msgs.
func (d *Dispatcher) publishAll(ctx context.Context, msgs []*nats.Msg, errs []error) {
	futures := make([]jetstream.PubAckFuture, len(msgs))
	awaited := 0 // every future before this index has been awaited
	for i, msg := range msgs {
		if msg == nil {
			continue
		}
		d.ensureQueueOf(ctx, msg)
		var err error
		for {
			futures[i], err = d.js.PublishMsgAsync(msg)
			if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) || awaited >= i {
				break
			}
			awaited = d.awaitOldest(ctx, futures, errs, awaited, i)
		}
		if err != nil {
			errs[i] = d.publishError(msg, err)
		}
	}
	for i := awaited; i < len(futures); i++ {
		if futures[i] != nil {
			errs[i] = d.awaitAck(ctx, futures[i])
		}
	}
	d.indexTagsOfBatch(ctx, futures, errs)
	for i, f := range futures {
		if f != nil && errs[i] == nil {
			d.dispatched(f.Msg())
		}
	}
}

// awaitOldest awaits the first outstanding future in futures[from:until],
// records its result in errs, and returns the index after it (until when
// there is none).
func (d *Dispatcher) awaitOldest(ctx context.Context, futures []jetstream.PubAckFuture, errs []error, from, until int) int {
	for j := from; j < until; j++ {
		if futures[j] != nil {
			errs[j] = d.awaitAck(ctx, futures[j])
			return j + 1
		}
	}
	return until
}

func batchError(errs []error) error {
	be := &BatchError{Errs: errs}
	for _, err := range errs {
		if err != nil {
			be.Failed++
		}
	}
	if be.Failed == 0 {
		return nil
	}
	return be
}

func (d *Dispatcher) awaitAck(ctx context.Context, f jetstream.PubAckFuture) error {
	select {
	case <-f.Ok():
		return nil
	case err := <-f.Err():
		return d.publishError(f.Msg(), err)
	case <-ctx.Done():
		return notAcked(f.Msg().Subject, ctx.Err())
	}
}

func (d *Dispatcher) encode(ctx context.Context, args Args, opts []Option) (*nats.Msg, string, error) {
	if args == nil {
		return nil, "", fmt.Errorf("%w: args are nil", ErrInvalid)
	}
	body, err := json.Marshal(args)
	if err != nil {
		return nil, "", fmt.Errorf("%w: args of kind %q do not encode as JSON: %v", ErrInvalid, args.Kind(), err)
	}
	// json.Marshal returns valid JSON or an error, so it is not checked again.
	return d.buildMsg(ctx, args.Kind(), body, opts, false)
}

// build makes the message of a job whose body came from outside as JSON.
func (d *Dispatcher) build(ctx context.Context, kind string, body []byte, opts []Option) (*nats.Msg, string, error) {
	return d.buildMsg(ctx, kind, body, opts, true)
}

// buildMsg validates a job and makes its message; checkJSON is false only
// for bodies json.Marshal produced.
func (d *Dispatcher) buildMsg(ctx context.Context, kind string, body []byte, opts []Option, checkJSON bool) (*nats.Msg, string, error) {
	o := options{queue: d.cfg.DefaultQueue}
	for _, opt := range opts {
		opt(&o)
	}
	if err := o.validate(kind, body, checkJSON); err != nil {
		return nil, "", err
	}
	if o.id == "" {
		o.id = nuid.Next()
	}
	// HeaderMsgID is already in canonical form, so no Header.Set is needed.
	msg := &nats.Msg{Subject: wire.JobIDSubject(o.queue, kind, o.id), Header: nats.Header{HeaderMsgID: []string{o.id}}, Data: body}
	o.setSettings(msg.Header)
	d.headersFromContext(ctx, msg.Header)
	if at := o.readyAt(); !at.IsZero() {
		scheduleAt(msg, o.queue, o.id, at)
	}
	if err := d.checkSize(msg); err != nil {
		return nil, "", err
	}
	return msg, o.id, nil
}

func (o *options) validate(kind string, body []byte, checkJSON bool) error {
	if err := validateName("queue", o.queue); err != nil {
		return err
	}
	if err := validateName("kind", kind); err != nil {
		return err
	}
	if checkJSON && !json.Valid(body) {
		return fmt.Errorf("%w: body of %s job is not valid JSON", ErrInvalid, kind)
	}
	if checkJSON && !utf8.Valid(body) { // JSON is UTF-8 (RFC 8259); decoders elsewhere refuse it, Go's alters it
		return fmt.Errorf("%w: body of %s job is not valid UTF-8", ErrInvalid, kind)
	}
	if o.triesOK && o.tries < 1 {
		return fmt.Errorf("%w: tries is %d; it must be at least 1", ErrInvalid, o.tries)
	}
	if o.timeout < 0 {
		return fmt.Errorf("%w: timeout is %s; it must be positive", ErrInvalid, o.timeout)
	}
	for _, b := range o.backoff {
		if b < 0 {
			return fmt.Errorf("%w: backoff %s is negative", ErrInvalid, b)
		}
	}
	if at, last := o.readyAt(), LastReadyAt(); at.After(last) {
		return fmt.Errorf("%w: the job would be ready at %s, after %s, the last time NATS schedules handle (a later one runs at once)", ErrInvalid, at.UTC().Format(time.RFC3339), last.Format(time.RFC3339))
	}
	if len(o.id) > 256 {
		return fmt.Errorf("%w: job ID is %d bytes; the limit is 256", ErrInvalid, len(o.id))
	}
	if o.id == "." || o.id == ".." {
		return fmt.Errorf("%w: job ID %q is a path step: no link (the dashboard's, an API's) could name the job", ErrInvalid, o.id)
	}
	if err := wire.ValidateJobID(o.id); err != nil {
		return err
	}
	return o.validateTags()
}

// validateName is wire.ValidateName with a fast path for the valid names of the
// dispatch hot path: a byte loop instead of the regular expression, which
// still writes the error of an invalid name.
func validateName(what, name string) error {
	if name == "" || len(name) > 64 {
		return wire.ValidateName(what, name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return wire.ValidateName(what, name)
		}
	}
	return nil
}

func (o *options) setSettings(h nats.Header) {
	if o.tries > 0 {
		h.Set(HeaderTries, strconv.Itoa(o.tries))
	}
	if o.timeout > 0 {
		h.Set(HeaderTimeout, o.timeout.String())
	}
	if len(o.backoff) > 0 {
		h.Set(HeaderBackoff, wire.FormatBackoff(o.backoff))
	}
	o.setTags(h)
}

func (o *options) readyAt() time.Time {
	if !o.at.IsZero() {
		return o.at
	}
	if o.delay > 0 {
		return time.Now().Add(o.delay)
	}
	return time.Time{}
}

// checkSize refuses a job JetStream would reject for size, or one too
// large to be dead-lettered with its body, naming the limit.
func (d *Dispatcher) checkSize(msg *nats.Msg) error {
	maxPayload := d.js.Conn().MaxPayload()
	size := int64(len(msg.Data)) + wire.HeaderSize(msg.Header)
	if maxPayload > 0 && size > maxPayload-wire.DeadLetterRoom {
		return fmt.Errorf("%w: job is %d bytes (body %d plus headers); the NATS server's max_payload is %d bytes, of which %d are kept for the headers of the job's dead letter", ErrInvalid, size, len(msg.Data), maxPayload, wire.DeadLetterRoom)
	}
	return nil
}

// noLeaderRetry bounds how long a publish keeps trying while no server
// answers for JOBS: in a cluster, the stream has no leader for a few
// seconds after its leader's server dies, and the followers drop what is
// published meanwhile, unanswered. Retries are safe: the job ID
// (Nats-Msg-Id) makes JetStream store the job once.
const (
	noLeaderRetry     = 15 * time.Second
	noLeaderRetryWait = 250 * time.Millisecond
	// publishAttempt bounds one attempt (nats.go's default timeout): a
	// caller's longer deadline leaves room for the attempts after it.
	publishAttempt = 5 * time.Second
)

func (d *Dispatcher) publish(ctx context.Context, msg *nats.Msg) error {
	_, _, err := d.publishAck(ctx, msg)
	return err
}

// publishAck is publish, with JetStream's answer. It tries again, for up
// to noLeaderRetry, while no server answers for the stream at once
// (ErrNoStreamResponse) and when an attempt got no answer in time while
// ctx goes on (a leader that died with the request, an election).
// unanswered reports that an attempt before the last got no answer: the
// job may have been stored by it, so a Duplicate answer may be this very
// publish.
func (d *Dispatcher) publishAck(ctx context.Context, msg *nats.Msg) (ack *jetstream.PubAck, unanswered bool, err error) {
	stop := time.Now().Add(noLeaderRetry)
	var last error
	for {
		actx, cancel := context.WithTimeout(ctx, publishAttempt)
		ack, err := d.js.PublishMsg(actx, msg, jetstream.WithRetryAttempts(0))
		cancel()
		if err == nil {
			return ack, unanswered, nil
		}
		if last != nil && ctx.Err() != nil {
			return nil, unanswered, d.publishError(msg, last) // the cause, not the context's end
		}
		timedOut := ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout))
		if !errors.Is(err, jetstream.ErrNoStreamResponse) && !timedOut || time.Now().After(stop) {
			return nil, unanswered, d.publishError(msg, err)
		}
		last, unanswered = err, unanswered || timedOut
		select {
		case <-ctx.Done():
			return nil, unanswered, d.publishError(msg, last)
		case <-time.After(noLeaderRetryWait):
		}
	}
}

// publishTraced publishes a job's message inside its dispatch span.
func (d *Dispatcher) publishTraced(ctx context.Context, msg *nats.Msg, id string, opts []Option) error {
	span, err := d.startDispatch(ctx, msg, id)
	if err != nil {
		return err
	}
	err = d.publishJob(ctx, msg, id, opts)
	endSpan(span, err)
	return err
}

// publishJob takes the job's unique key when it has one (unique.go),
// publishes the job's message and reports it to Config.OnDispatched once
// stored.
func (d *Dispatcher) publishJob(ctx context.Context, msg *nats.Msg, id string, opts []Option) error {
	d.ensureQueueOf(ctx, msg)
	unlock, err := d.lockUnique(ctx, msg, id, opts)
	if err != nil {
		return err
	}
	ack, unanswered, err := d.publishAck(ctx, msg)
	switch {
	case err == nil && ack.Duplicate && unanswered:
		// Stored by this dispatch's own unanswered attempt, with its key,
		// or by an earlier one: the key stays, as when the answer is lost.
	case err == nil && ack.Duplicate:
		unlock(errStoredBefore) // the job stored is an earlier one, without this key
	case err != nil && unanswered:
		// An attempt got no answer: it may have stored the job, with its
		// key, whatever the last attempt ran into. The key stays.
	default:
		unlock(err)
	}
	if err != nil {
		return err
	}
	if err := d.indexTags(ctx, msg); err != nil {
		return err
	}
	d.dispatched(msg)
	return nil
}

// dispatched tells Config.OnDispatched about a stored job; a delayed job's
// queue and kind are in its schedule target.
func (d *Dispatcher) dispatched(msg *nats.Msg) {
	if d.cfg.OnDispatched == nil {
		return
	}
	if queue, kind, ok := jobTarget(msg); ok {
		d.cfg.OnDispatched(queue, kind)
	}
}

func (d *Dispatcher) publishError(msg *nats.Msg, err error) error {
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%w: no stream answered on %s (is the %s stream provisioned? run `jetfleet up` or call bus.Provision): %w", ErrNotAcknowledged, msg.Subject, JobsStream, err)
	}
	return notAcked(msg.Subject, err)
}

// noAnswer says what a publish that got no answer in time can mean.
const noAnswer = "no answer in time: the server stored nothing it confirmed; " +
	"it may be unable to write (its disk full) or the stream may have lost its quorum (nodes down or cut off); " +
	"the job may or may not be stored, and dispatching it again with the same job ID is safe"

// notAcked wraps err, the reason JetStream did not acknowledge what was
// published as what, in ErrNotAcknowledged; a timeout gets the causes it
// can have in words.
func notAcked(what string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
		return fmt.Errorf("%w: %s: %s: %w", ErrNotAcknowledged, what, noAnswer, err)
	}
	return fmt.Errorf("%w: %s: %w", ErrNotAcknowledged, what, err)
}
