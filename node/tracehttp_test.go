package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/node"
)

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServerSpansAreNamedByRoute: a web node with tracing on names each
// request's span after the ServeMux pattern that served it, never the raw
// path, continues a caller's traceparent, serves its probes without a
// span, and the app's log lines written with the request's context carry
// the span's IDs.
func TestServerSpansAreNamedByRoute(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	logs := &syncBuffer{}
	app := node.App{Name: "shop", Routes: func(s *node.Services, mux *http.ServeMux) {
		mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
			s.Logger.Info().Ctx(r.Context()).Str("id", r.PathValue("id")).Msg("item read")
		})
	}}
	env := map[string]string{"NATS_URL": srv.ClientURL()}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.Open(ctx, app, node.Config{Getenv: func(k string) string { return env[k] }, DataDir: t.TempDir(),
		TracerProvider: tp, Logger: zerolog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	base := serveForTest(t, ctx, cancel, n)
	get := func(path, traceparent string) {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if traceparent != "" {
			req.Header.Set("traceparent", traceparent)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	get("items/42", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	get("up", "")
	get("nothing/here", "")

	var names []string
	for _, s := range rec.Ended() {
		names = append(names, s.Name())
	}
	if strings.Join(names, ",") != "GET /items/{id},GET /" {
		t.Fatalf("spans %v, want the item route's and the unmatched request's (named after the node's catch-all), none for /up", names)
	}
	item := rec.Ended()[0]
	if item.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || item.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("the item span did not continue the caller's trace: %v parent %v", item.SpanContext().TraceID(), item.Parent().SpanID())
	}
	var line struct{ Message, TraceID, SpanID string }
	for l := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(l, "item read") {
			var raw map[string]string
			_ = json.Unmarshal([]byte(l), &raw)
			line.Message, line.TraceID, line.SpanID = raw["message"], raw["trace_id"], raw["span_id"]
		}
	}
	if line.TraceID != item.SpanContext().TraceID().String() || line.SpanID != item.SpanContext().SpanID().String() {
		t.Errorf("the app's log line %+v does not name the request's span %s/%s", line, item.SpanContext().TraceID(), item.SpanContext().SpanID())
	}
}
