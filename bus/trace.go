package bus

// Trace propagation on jobs (W3C Trace Context) and the dispatcher's spans.
//
// A job carries its trace in two headers, traceparent and tracestate, in
// the W3C form (https://www.w3.org/TR/trace-context/), so that a producer
// in any language joins the trace by setting them. A dispatch inside a
// traced request starts a "dispatch <kind>" span, a child of the request's,
// and the job's traceparent names that span: every attempt of the job,
// retries and retried dead letters included, is a child of the dispatch in
// the same trace. Nothing in the wire contract depends on the headers: a
// job without them runs as before.

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Trace headers of the wire contract (W3C Trace Context), lower case as
// the W3C writes them; readers accept any case.
const (
	// HeaderTraceparent is the job's trace and parent span:
	// "00-<32 hex trace ID>-<16 hex span ID>-<2 hex flags>".
	HeaderTraceparent = "traceparent"
	// HeaderTracestate carries vendor-specific trace data along with
	// traceparent.
	HeaderTracestate = "tracestate"
)

// TracerName is the instrumentation scope of the spans bus, workers,
// sessions and readmodel start, and the prefix of their attribute names
// ("jetfleet.").
const TracerName = "github.com/jetfleet/jetfleet"

// Attribute keys of jetfleet's job spans (beside OpenTelemetry's
// messaging.* keys: a dispatch has the job ID as messaging.message.id and
// its subject, jobs.<queue>.<kind>.<id>, as messaging.destination.name).
const (
	AttrQueue   = attribute.Key("jetfleet.queue")
	AttrKind    = attribute.Key("jetfleet.job.kind")
	AttrJobID   = attribute.Key("jetfleet.job.id")
	AttrAttempt = attribute.Key("jetfleet.job.attempt")
	AttrOutcome = attribute.Key("jetfleet.job.outcome")
)

// headerCarrier is a job's headers as OpenTelemetry's TextMapCarrier.
// Get finds a key in any case: a producer may have written Traceparent.
type headerCarrier nats.Header

func (c headerCarrier) Get(key string) string {
	if v := nats.Header(c)[key]; len(v) > 0 {
		return v[0]
	}
	for k, v := range c {
		if len(v) > 0 && strings.EqualFold(k, key) {
			return v[0]
		}
	}
	return ""
}

func (c headerCarrier) Set(key, val string) { c[key] = []string{val} }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// InjectTrace writes the span context of ctx into h as traceparent (and
// tracestate when it has one), replacing what h held. It writes nothing
// when ctx carries no valid span context.
func InjectTrace(ctx context.Context, h nats.Header) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	propagation.TraceContext{}.Inject(ctx, headerCarrier(h))
}

// ExtractTrace returns ctx carrying, as its remote parent, the span
// context of h's traceparent and tracestate; ctx itself when h has none or
// a malformed one.
func ExtractTrace(ctx context.Context, h nats.Header) context.Context {
	if len(h) == 0 {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, headerCarrier(h))
}

// IsPeriodicRun reports whether h is a run of a periodic schedule (the
// server's scheduler sets Nats-Scheduler to schedules.every.<name>). Its
// traceparent names the span that registered the schedule, so a worker
// starts a trace of its own linked to it rather than a child of it.
func IsPeriodicRun(h nats.Header) bool {
	return strings.HasPrefix(h.Get("Nats-Scheduler"), SchedulePrefix+".every.")
}

// tracerFor is the tracer of tp (the global provider when nil), or nil for
// the no-op provider, so that a dispatcher with tracing off starts no span.
func tracerFor(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if _, off := tp.(noop.TracerProvider); off {
		return nil
	}
	return tp.Tracer(TracerName)
}

// startDispatch starts the span of one job's dispatch, a child of ctx's,
// and writes it into the job's headers as its traceparent. With tracing
// off it only passes on a span context that ctx already carries. The
// headers grow, so the job's size is checked again.
func (d *Dispatcher) startDispatch(ctx context.Context, msg *nats.Msg, id string) (trace.Span, error) {
	if d.tracer == nil {
		if !trace.SpanContextFromContext(ctx).IsValid() {
			return nil, nil
		}
		InjectTrace(ctx, msg.Header)
		return nil, d.checkSize(msg)
	}
	// The span is named once it is known to be recorded: a dropped one
	// costs no name, no attributes.
	ctx, span := d.tracer.Start(ctx, "dispatch", d.spanStart...)
	if span.IsRecording() {
		queue, kind, _ := jobTarget(msg)
		subject := targetSubject(msg)
		span.SetName("dispatch " + kind)
		span.SetAttributes(
			attribute.String("messaging.system", "jetfleet"),
			attribute.String("messaging.operation.name", "dispatch"),
			attribute.String("messaging.destination.name", subject),
			attribute.String("messaging.message.id", id),
			AttrQueue.String(queue))
		if at := msg.Header.Get(headerSchedule); at != "" {
			span.SetAttributes(attribute.String("jetfleet.job.ready_at", strings.TrimPrefix(at, "@at ")))
		}
	}
	InjectTrace(ctx, msg.Header)
	if err := d.checkSize(msg); err != nil {
		endSpan(span, err)
		return nil, err
	}
	return span, nil
}

// startBatch starts the one span of a DispatchMany call; each job of the
// batch names it as its parent (injectBatch).
func (d *Dispatcher) startBatch(ctx context.Context, n int) (context.Context, trace.Span) {
	if d.tracer == nil {
		return ctx, nil
	}
	ctx, span := d.tracer.Start(ctx, "dispatch batch", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "jetfleet"),
			attribute.String("messaging.operation.name", "dispatch"),
			attribute.String("messaging.operation.type", "send"),
			attribute.Int("messaging.batch.message_count", n)))
	return ctx, span
}

// injectBatch writes the batch's span (or the caller's, with tracing off)
// into msg; a job the extra bytes make too large fails alone.
func (d *Dispatcher) injectBatch(ctx context.Context, msg *nats.Msg) error {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	InjectTrace(ctx, msg.Header)
	return d.checkSize(msg)
}

// startSchedule starts the span of a periodic schedule's registration and
// writes it into the schedule's message: every run links to it.
func (d *Dispatcher) startSchedule(ctx context.Context, name string, msg *nats.Msg) trace.Span {
	if d.tracer == nil {
		InjectTrace(ctx, msg.Header)
		return nil
	}
	queue, kind, _ := jobTarget(msg)
	subject := targetSubject(msg)
	ctx, span := d.tracer.Start(ctx, "schedule "+name, trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("messaging.system", "jetfleet"),
			attribute.String("messaging.destination.name", subject),
			attribute.String("jetfleet.schedule", name), AttrQueue.String(queue), AttrKind.String(kind)))
	InjectTrace(ctx, msg.Header)
	return span
}

// endSpan ends span (nil with tracing off), marking it failed with err.
func endSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
