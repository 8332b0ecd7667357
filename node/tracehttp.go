package node

// The web node's server spans and the trace IDs of log lines.

import (
	"net/http"
	"strings"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/metrics"
)

// isUntraced reports the paths a web node serves without a span: probes a
// balancer polls every second, and scrapes.
func isUntraced(path string) bool {
	switch path {
	case "/up", "/livez", "/readyz", "/metrics":
		return true
	}
	return false
}

// wrapHTTP gives every request of next but the probes a server span, a
// child of the request's traceparent when it has one. The span is named
// after the ServeMux pattern that served the request ("POST
// /items/{id}/images"), known once it was routed, never after the raw
// path. With tracing off next is returned as it is.
func (t *tracing) wrapHTTP(next http.Handler) http.Handler {
	if !t.on {
		return next
	}
	tracer := t.tp.Tracer(bus.TracerName)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if isUntraced(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		ctx := r.Context()
		if len(r.Header["Traceparent"]) > 0 { // the server canonicalizes header names
			ctx = propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(r.Header))
		}
		ctx, span := tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer))
		if span.IsRecording() {
			span.SetAttributes(attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path))
		}
		sw := &metrics.StatusWriter{ResponseWriter: w}
		r = r.WithContext(ctx)
		defer endServerSpan(span, r, sw)
		next.ServeHTTP(sw, r)
	})
}

// endServerSpan names the span after the route the mux matched and
// records the status; a 5xx marks it failed.
func endServerSpan(span trace.Span, r *http.Request, sw *metrics.StatusWriter) {
	if p := recover(); p != nil {
		span.SetStatus(codes.Error, "panic")
		span.End()
		panic(p)
	}
	if !span.IsRecording() {
		span.End()
		return
	}
	if r.Pattern != "" {
		route := r.Pattern
		if method, path, ok := strings.Cut(route, " "); ok && !strings.Contains(method, "/") {
			route = path
			span.SetName(r.Pattern)
		} else {
			span.SetName(r.Method + " " + route)
		}
		span.SetAttributes(attribute.String("http.route", route))
	}
	code := sw.Status()
	span.SetAttributes(attribute.Int("http.response.status_code", code))
	if code >= 500 {
		span.SetStatus(codes.Error, http.StatusText(code))
	}
	span.End()
}

// TraceHook is a zerolog hook that adds trace_id and span_id to every line
// written with the context of a sampled span, the IDs a trace backend
// shows:
//
//	log := logger.Hook(node.TraceHook{})
//	log.Info().Ctx(ctx).Msg("thumbnails made") // {"trace_id":"4bf9…","span_id":"00f0…",...}
//
// A node's logger (Services.Logger, and every logger derived from it) has
// it whenever tracing is on; the lines workers write about a job carry the
// IDs of its attempt's span either way.
type TraceHook struct{}

// Run implements zerolog.Hook.
func (TraceHook) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	if sc := trace.SpanContextFromContext(e.GetCtx()); sc.IsSampled() {
		e.Str("trace_id", sc.TraceID().String()).Str("span_id", sc.SpanID().String())
	}
}
