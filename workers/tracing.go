package workers

// The span of each job attempt. It starts when a job goroutine takes the
// delivery and ends when its outcome is settled with the server, so it
// holds the outcome (succeeded, retried, dead_lettered, handed_back) as
// well as the handler's error. Its parent is the job's traceparent (the
// dispatch span, bus/trace.go): every attempt of a job, retries and
// retried dead letters included, is a child of its dispatch in one trace.
// A run of a periodic schedule is the exception: it starts a trace of its
// own, linked to the schedule's registration, since a schedule lives for
// months and one trace must not grow with it.

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/jetfleet/jetfleet/bus"
)

// tracerFor is the tracer of tp (the global provider when nil), or nil
// for the no-op provider: a worker with tracing off starts no span and
// adds nothing to a job's context.
func tracerFor(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if _, off := tp.(noop.TracerProvider); off {
		return nil
	}
	return tp.Tracer(bus.TracerName)
}

// attemptSpan is the span of one delivery; the zero value (tracing off)
// does nothing.
type attemptSpan struct {
	span trace.Span
	ctx  context.Context // the handler's parent context, carrying span
	job  *bus.Job
}

// traceAttempt starts r's span as a child of the job's traceparent (or
// linked to it, for a periodic run) and adds its trace and span IDs to the
// job's log lines when it is sampled.
func (l *loop) traceAttempt(r *run, job *bus.Job) {
	t := l.w.tracer
	if t == nil {
		return
	}
	parent := bus.ExtractTrace(l.jobBase, job.Header)
	opts := l.w.spanStart
	if bus.IsPeriodicRun(job.Header) {
		if sc := trace.SpanContextFromContext(parent); sc.IsValid() {
			opts = []trace.SpanStartOption{opts[0], trace.WithLinks(trace.Link{SpanContext: sc}), trace.WithNewRoot()}
		}
	}
	ctx, span := t.Start(parent, "process", opts...) // named below when recorded: a dropped span costs no name
	if span.IsRecording() {
		span.SetName("process " + job.Kind) // its attributes are set when it ends, all at once (end)
	}
	r.fields.span = span.SpanContext() // the job's log lines carry its IDs when sampled (joblog.go)
	r.trace = attemptSpan{span: span, ctx: ctx, job: job}
}

// context is the parent of the handler's context: base with the span.
func (a *attemptSpan) context(base context.Context) context.Context {
	if a.ctx == nil {
		return base
	}
	return a.ctx
}

// failed records the handler's error on the span.
func (a *attemptSpan) failed(err error) {
	if a.span == nil || err == nil {
		return
	}
	a.span.RecordError(err)
	a.span.SetStatus(codes.Error, firstLine(err.Error()))
}

// end ends the span with the delivery's settled outcome (execute.go's
// names, reported as workers.Outcome's) and the error of settling it.
func (a *attemptSpan) end(outcome string, settleErr error) {
	if a.span == nil {
		return
	}
	if !a.span.IsRecording() { // sampled out: nothing to record
		a.span.End()
		return
	}
	name := outcome
	if o, ok := outcomes[outcome]; ok {
		name = string(o)
	}
	// One call: the SDK grows the span's attribute slice on each.
	a.span.SetAttributes(
		attribute.String("messaging.system", "jetfleet"),
		attribute.String("messaging.operation.name", "process"),
		bus.AttrQueue.String(a.job.Queue), bus.AttrKind.String(a.job.Kind), bus.AttrJobID.String(a.job.ID),
		bus.AttrAttempt.Int(a.job.Attempt), bus.AttrOutcome.String(name))
	if settleErr != nil {
		a.span.RecordError(settleErr)
		a.span.SetStatus(codes.Error, "could not settle the job with the server: "+settleErr.Error())
	} else if outcome != "acked" {
		a.span.SetStatus(codes.Error, name)
	}
	a.span.End()
}
