package readmodel

// Spans of the read model: one per read (Get, Select, Query) and per
// write (Exec, NamedExec, Tx), a child of the caller's span. A read's span
// says where it went and why (jetfleet.db.target primary or replica,
// jetfleet.db.reason as ObserveRead reports it) and, when it was tried
// again elsewhere, which member failed. The statement is recorded as
// written, with its placeholders: never its arguments.

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// tracerName is the instrumentation scope of jetfleet's spans.
const tracerName = "github.com/jetfleet/jetfleet"

// maxStatement bounds the statement text recorded on a span.
const maxStatement = 2048

// Attribute keys of the read model's spans.
const (
	// AttrTarget is the role of the member a query ran on.
	AttrTarget = attribute.Key("jetfleet.db.target")
	// AttrReason is why a read went there (a ReadReason).
	AttrReason = attribute.Key("jetfleet.db.reason")
)

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

// querySpan is one query's span; the zero value (tracing off) does
// nothing.
type querySpan struct {
	span   trace.Span
	sqlite bool // members are a file, not a server address
}

// startQuery starts the span of query ("" for a transaction) as a child
// of ctx's.
func (d *DB) startQuery(ctx context.Context, query string) querySpan {
	if d.tracer == nil {
		return querySpan{}
	}
	name := "transaction"
	if query != "" {
		name = operation(query)
	}
	_, span := d.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("db.system.name", d.system()), attribute.String("db.operation.name", name))
		if query != "" {
			span.SetAttributes(attribute.String("db.query.text", truncateStatement(query)))
		}
		if d.cfg.Driver != DriverSQLite {
			span.SetAttributes(attribute.String("db.namespace", d.cfg.Database))
		}
	}
	return querySpan{span: span, sqlite: d.cfg.Driver == DriverSQLite}
}

// routed records the member a query runs on and, for a read, why.
func (s querySpan) routed(m *member, why ReadReason) {
	if s.span == nil || !s.span.IsRecording() {
		return
	}
	s.span.SetAttributes(AttrTarget.String(string(m.role)))
	if why != "" {
		s.span.SetAttributes(AttrReason.String(string(why)))
	}
	if !s.sqlite {
		s.span.SetAttributes(attribute.String("server.address", m.addr))
	}
}

// retried records that the read failed on failed and runs again on alt.
func (s querySpan) retried(failed, alt *member, err error) {
	if s.span == nil {
		return
	}
	s.span.AddEvent("read retried on another member", trace.WithAttributes(
		attribute.String("jetfleet.db.failed_member", failed.addr), attribute.String("exception.message", err.Error())))
	s.routed(alt, ReadRetried)
}

// end ends the span; sql.ErrNoRows is an answer, not an error.
func (s querySpan) end(err error) {
	if s.span == nil {
		return
	}
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		s.span.RecordError(err)
		s.span.SetStatus(codes.Error, err.Error())
	}
	s.span.End()
}

// system is the db.system.name of the configured driver.
func (d *DB) system() string {
	if d.cfg.Driver == DriverSQLite {
		return "sqlite"
	}
	if d.mariadb.Load() {
		return "mariadb"
	}
	return "mysql"
}

// operation is the statement's first keyword in upper case ("SELECT"), or
// "query" when it has none.
func operation(query string) string {
	for i := 0; i < len(query); {
		c := query[i]
		switch {
		case c == '-' && i+1 < len(query) && query[i+1] == '-', c == '#':
			i = skipLine(query, i)
		case c == '/' && i+1 < len(query) && query[i+1] == '*':
			i = skipBlock(query, i)
		case isWordByte(c):
			j := i
			for j < len(query) && isWordByte(query[j]) && j-i < 16 {
				j++
			}
			return strings.ToUpper(query[i:j])
		default:
			i++
		}
	}
	return "query"
}

// truncateStatement cuts a statement to maxStatement bytes at a character
// boundary.
func truncateStatement(q string) string {
	if len(q) <= maxStatement {
		return q
	}
	n := maxStatement
	for n > 0 && q[n]&0xC0 == 0x80 {
		n--
	}
	return q[:n] + "…"
}
