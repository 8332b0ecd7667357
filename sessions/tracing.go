package sessions

// Spans of the session store: "session load", "session save" and "session
// delete", children of the request's span, with the bucket's name and, for
// a load, whether a live session was found and whether the node's copy of
// the bucket answered it (no request to NATS). Keys are never recorded: a
// key is the SHA-256 of a session token.

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// tracerName is the instrumentation scope of jetfleet's spans
// (bus.TracerName; sessions does not import bus).
const tracerName = "github.com/jetfleet/jetfleet"

// tracerFor is the tracer of tp (the global provider when nil), or nil
// for the no-op provider.
func tracerFor(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if _, off := tp.(noop.TracerProvider); off {
		return nil
	}
	return tp.Tracer(tracerName)
}

// storeSpan is one store operation's span; the zero value does nothing.
type storeSpan struct{ span trace.Span }

// startSpan starts the span of the store operation op ("load", "save",
// "delete") as a child of ctx's.
func (m *Manager) startSpan(ctx context.Context, op string) (context.Context, storeSpan) {
	if m.tracer == nil {
		return ctx, storeSpan{}
	}
	ctx, span := m.tracer.Start(ctx, "session "+op, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("jetfleet.session.bucket", m.cfg.Bucket)))
	return ctx, storeSpan{span: span}
}

// found records whether a load found a live session.
func (s storeSpan) found(ok bool) {
	if s.span != nil {
		s.span.SetAttributes(attribute.Bool("jetfleet.session.found", ok))
	}
}

// fromCopy records that the node's copy of the bucket answered a load.
func (s storeSpan) fromCopy() {
	if s.span != nil {
		s.span.SetAttributes(attribute.Bool("jetfleet.session.local_copy", true))
	}
}

// end ends the span; a conflict is recorded, not marked an error (the save
// merges and tries again).
func (s storeSpan) end(err error) {
	if s.span == nil {
		return
	}
	switch {
	case err == nil:
	case isConflict(err):
		s.span.SetAttributes(attribute.Bool("jetfleet.session.conflict", true))
	default:
		s.span.RecordError(err)
		s.span.SetStatus(codes.Error, err.Error())
	}
	s.span.End()
}
