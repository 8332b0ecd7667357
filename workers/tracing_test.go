package workers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/workers"
)

// traced is a server, a dispatcher and a worker whose spans a recorder
// keeps.
type traced struct {
	*env
	rec *tracetest.SpanRecorder
	tp  *sdktrace.TracerProvider
	log *logBuffer
}

func newTraced(t *testing.T) *traced {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	tr := &traced{env: newEnv(t, bus.Config{TracerProvider: tp}), rec: rec, tp: tp, log: &logBuffer{}}
	w := workers.New(tr.js, workers.Config{TracerProvider: tp, Backoff: []time.Duration{10 * time.Millisecond},
		Logger: zerolog.New(tr.log)})
	workers.RegisterDiagnostics(w)
	start(t, w)
	return tr
}

// ended returns the ended spans named name, waiting until there are n.
func (tr *traced) ended(t *testing.T, name string, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	var out []sdktrace.ReadOnlySpan
	waitFor(t, 20*time.Second, fmt.Sprintf("%d %q spans", n, name), func() bool {
		out = out[:0]
		for _, s := range tr.rec.Ended() {
			if s.Name() == name {
				out = append(out, s)
			}
		}
		return len(out) >= n
	})
	return out
}

// bytes is what was written so far.
func (b *logBuffer) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, kv := range s.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// TestAttemptsAreChildrenOfTheirDispatch dispatches, inside a request's
// span, a job that fails once and a delayed job: each job's dispatch span
// is a child of the request's, and every attempt of it, the retry
// included, a child of its dispatch, with the attempt number and settled
// outcome; the handler's context carries the attempt's span.
func TestAttemptsAreChildrenOfTheirDispatch(t *testing.T) {
	t.Parallel()
	tr := newTraced(t)
	ctx, req := tr.tp.Tracer("test").Start(context.Background(), "request")
	failID, err := tr.d.Dispatch(ctx, workers.Fail{Times: 1}, bus.Tries(3))
	if err != nil {
		t.Fatal(err)
	}
	delayedID, err := tr.d.Dispatch(ctx, workers.Noop{}, bus.Delay(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	req.End()

	dispatches := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range tr.ended(t, "dispatch jetfleet-fail", 1) {
		dispatches[attr(s, "messaging.message.id")] = s
	}
	for _, s := range tr.ended(t, "dispatch jetfleet-noop", 1) {
		dispatches[attr(s, "messaging.message.id")] = s
	}
	for _, id := range []string{failID, delayedID} {
		d := dispatches[id]
		if d == nil || d.Parent().SpanID() != req.SpanContext().SpanID() || d.SpanContext().TraceID() != req.SpanContext().TraceID() {
			t.Fatalf("dispatch span of %s missing or not a child of the request", id)
		}
	}
	if got := attr(dispatches[delayedID], "jetfleet.job.ready_at"); got == "" {
		t.Errorf("the delayed job's dispatch span has no ready_at")
	}

	var got []string
	for _, s := range append(tr.ended(t, "process jetfleet-fail", 2), tr.ended(t, "process jetfleet-noop", 1)...) {
		id := attr(s, "jetfleet.job.id")
		if s.Parent().SpanID() != dispatches[id].SpanContext().SpanID() {
			t.Errorf("attempt %s of %s: parent %s, want its dispatch", attr(s, "jetfleet.job.attempt"), id, s.Parent().SpanID())
		}
		if s.SpanKind() != trace.SpanKindConsumer {
			t.Errorf("attempt span kind %s", s.SpanKind())
		}
		got = append(got, fmt.Sprintf("%s#%s:%s", attr(s, "jetfleet.job.kind"), attr(s, "jetfleet.job.attempt"), attr(s, "jetfleet.job.outcome")))
	}
	want := "jetfleet-fail#1:retried jetfleet-fail#2:succeeded jetfleet-noop#1:succeeded"
	if strings.Join(got, " ") != want {
		t.Errorf("attempts: %s, want %s", strings.Join(got, " "), want)
	}
}

// TestPeriodicRunsLinkToTheirSchedule registers a periodic job inside a
// span: its run starts a trace of its own (a schedule lives for months),
// linked to the registration's span.
func TestPeriodicRunsLinkToTheirSchedule(t *testing.T) {
	t.Parallel()
	tr := newTraced(t)
	ctx, req := tr.tp.Tracer("test").Start(context.Background(), "deploy")
	if err := tr.d.Schedule(ctx, "tick", "@every 1s", workers.Noop{}); err != nil {
		t.Fatal(err)
	}
	req.End()
	reg := tr.ended(t, "schedule tick", 1)[0]
	if reg.Parent().SpanID() != req.SpanContext().SpanID() {
		t.Fatalf("the schedule's span is not a child of the registering span")
	}
	run := tr.ended(t, "process jetfleet-noop", 1)[0]
	if run.Parent().IsValid() || run.SpanContext().TraceID() == reg.SpanContext().TraceID() {
		t.Errorf("a periodic run is in the schedule's trace (parent %v): it must start its own", run.Parent())
	}
	links := run.Links()
	if len(links) != 1 || links[0].SpanContext.SpanID() != reg.SpanContext().SpanID() {
		t.Errorf("a periodic run's links: %+v, want the schedule's span", links)
	}
}

// TestJobLogLinesCarryTheAttemptsIDs: the worker's lines about a traced
// job name its attempt's trace and span.
func TestJobLogLinesCarryTheAttemptsIDs(t *testing.T) {
	t.Parallel()
	tr := newTraced(t)
	ctx, req := tr.tp.Tracer("test").Start(context.Background(), "request")
	id, err := tr.d.Dispatch(ctx, workers.Noop{})
	if err != nil {
		t.Fatal(err)
	}
	req.End()
	attempt := tr.ended(t, "process jetfleet-noop", 1)[0]
	var line struct {
		JobID   string `json:"job_id"`
		TraceID string `json:"trace_id"`
		SpanID  string `json:"span_id"`
	}
	waitFor(t, 10*time.Second, "the job's success logged", func() bool { return tr.log.count("job succeeded") == 1 })
	for l := range bytes.SplitSeq(tr.log.bytes(), []byte("\n")) {
		if bytes.Contains(l, []byte("job succeeded")) {
			if err := json.Unmarshal(l, &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if line.JobID != id || line.TraceID != attempt.SpanContext().TraceID().String() || line.SpanID != attempt.SpanContext().SpanID().String() {
		t.Errorf("success line %+v, want job %s trace %s span %s", line, id, attempt.SpanContext().TraceID(), attempt.SpanContext().SpanID())
	}
}

// TestTracingOffStartsNoSpan: with the no-op provider a dispatch starts
// no span but passes on its caller's trace, and a worker hands its
// handler no span.
func TestTracingOffStartsNoSpan(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{TracerProvider: noop.NewTracerProvider()})
	rec := tracetest.NewSpanRecorder()
	caller := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	handled := make(chan trace.SpanContext, 1)
	w := workers.New(e.js, workers.Config{TracerProvider: noop.NewTracerProvider(), Middleware: []workers.Middleware{
		func(next workers.HandlerFunc) workers.HandlerFunc {
			return func(ctx context.Context, j *bus.Job) error {
				if tp := j.Header.Get(bus.HeaderTraceparent); !strings.Contains(tp, "-") {
					t.Errorf("the job lost its caller's traceparent: %q", tp)
				}
				handled <- trace.SpanContextFromContext(ctx)
				return next(ctx, j)
			}
		},
	}})
	workers.RegisterDiagnostics(w)
	start(t, w)
	ctx, span := caller.Tracer("test").Start(context.Background(), "caller")
	if _, err := e.d.Dispatch(ctx, workers.Noop{}); err != nil {
		t.Fatal(err)
	}
	span.End()
	select {
	case sc := <-handled:
		if sc.IsValid() {
			t.Errorf("the handler's context carries a span (%v) with tracing off", sc)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the job did not run within 20s")
	}
	if n := len(rec.Ended()); n != 1 {
		t.Errorf("%d spans ended, want only the caller's", n)
	}
}
