package bus

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/attribute"
)

// HeaderCausalToken carries the causal-consistency token of the writes
// made before a job was dispatched: one or more MariaDB GTID positions
// ("0-1-42", or "0-1-42,1-3-7"), comma separated; a reader takes the
// highest sequence per replication domain. A worker whose handlers read
// through package readmodel reads, for such a job, from a replica that has
// applied it (waiting up to readmodel's CausalWait), else from the
// primary, as a web request with readmodel.WithToken does. Set by
// readmodel.JobHeaders (through Config.HeadersFromContext) and by
// readmodel's outbox; optional, and meaningless to other languages' jobs
// unless they read through readmodel.
const HeaderCausalToken = "Jetfleet-Causal-Token"

// headersFromContext runs Config.HeadersFromContext on a job's headers.
func (d *Dispatcher) headersFromContext(ctx context.Context, h nats.Header) {
	for _, f := range d.cfg.HeadersFromContext {
		f(ctx, h)
	}
}

// Prepared is a job built and checked by a Dispatcher but not published
// yet: what an outbox stores in the application's database inside a
// transaction and publishes once the transaction has committed
// (readmodel.Outbox). Publishing it again later stores it once within the
// duplicate window: Header holds its Nats-Msg-Id.
type Prepared struct {
	// ID is the job's ID, also its Nats-Msg-Id.
	ID string
	// Subject is where it is published: jobs.<queue>.<kind>, or
	// schedules.delay.<queue>.<id> for a delayed job.
	Subject string
	// Header holds the job's headers: Nats-Msg-Id, its settings, those of
	// Config.HeadersFromContext and, for a delayed job, its schedule.
	Header nats.Header
	// Body is the job's arguments as JSON.
	Body []byte
}

// Prepare builds and checks the job Dispatch would publish, without
// publishing it. A delayed job's time is fixed now: published later, it
// runs at that time, or at once if that time has passed. Unique is refused
// (ErrInvalid): PublishPrepared takes no key; JobID makes a prepared job
// idempotent.
//
// Like Dispatch, it traces the job: a "dispatch <kind>" span (marked
// jetfleet.dispatch.prepared) as the job's parent, whose context the job
// carries in traceparent, so the attempts of a job published later (an
// outbox's relay) belong to the trace of the request that prepared it.
func (d *Dispatcher) Prepare(ctx context.Context, args Args, opts ...Option) (Prepared, error) {
	msg, id, err := d.encode(ctx, args, opts)
	if err == nil {
		err = noUniquePrepared(opts)
	}
	if err != nil {
		return Prepared{}, err
	}
	return d.prepared(ctx, msg, id)
}

// prepared traces a prepared job (Prepare) and returns it.
func (d *Dispatcher) prepared(ctx context.Context, msg *nats.Msg, id string) (Prepared, error) {
	span, err := d.startDispatch(ctx, msg, id)
	if err != nil {
		return Prepared{}, err
	}
	if span != nil {
		span.SetAttributes(attribute.Bool("jetfleet.dispatch.prepared", true))
	}
	endSpan(span, nil)
	return Prepared{ID: id, Subject: msg.Subject, Header: msg.Header, Body: msg.Data}, nil
}

// PrepareJSON is Prepare for a kind and arguments that are already JSON.
func (d *Dispatcher) PrepareJSON(ctx context.Context, kind string, body []byte, opts ...Option) (Prepared, error) {
	msg, id, err := d.build(ctx, kind, body, opts)
	if err == nil {
		err = noUniquePrepared(opts)
	}
	if err != nil {
		return Prepared{}, err
	}
	return d.prepared(ctx, msg, id)
}

// PublishPrepared publishes prepared jobs with asynchronous publishes and
// waits for every acknowledgement, as DispatchMany does. When some fail,
// the error is a *BatchError aligned with jobs. A job whose ID JetStream
// already stored within the duplicate window is acknowledged without being
// stored again.
func (d *Dispatcher) PublishPrepared(ctx context.Context, jobs ...Prepared) error {
	msgs := make([]*nats.Msg, len(jobs))
	errs := make([]error, len(jobs))
	for i, p := range jobs {
		if p.Subject == "" || p.Header.Get(HeaderMsgID) == "" {
			errs[i] = fmt.Errorf("%w: prepared job %q has no subject or no %s", ErrInvalid, p.ID, HeaderMsgID)
			continue
		}
		msgs[i] = &nats.Msg{Subject: p.Subject, Header: p.Header, Data: p.Body}
	}
	d.publishAll(ctx, msgs, errs)
	return batchError(errs)
}
