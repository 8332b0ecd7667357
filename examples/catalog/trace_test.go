package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
	"github.com/jetfleet/jetfleet/internal/jaegertest"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/proctest"
)

// tracedFarm is `catalog serve` and `catalog work` as two processes on one
// NATS server and one SQLite file, exporting their spans to a real Jaeger.
type tracedFarm struct {
	jaeger      *jaegertest.Jaeger
	base        string
	serve, work *proctest.Proc
	env         []string
}

func newTracedFarm(t *testing.T, workArgs ...string) *tracedFarm {
	f := &tracedFarm{jaeger: jaegertest.Start(t)}
	srv := natstest.Start(t)
	f.env = proctest.Env("NATS_URL="+srv.ClientURL(), "JETFLEET_DATA="+t.TempDir(),
		"OTEL_EXPORTER_OTLP_ENDPOINT="+f.jaeger.OTLPEndpoint, "OTEL_BSP_SCHEDULE_DELAY=100")
	if r := proctest.Run(t, binary, t.TempDir(), f.env, "", "migrate"); r.Code != 0 {
		t.Fatalf("migrate: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(t, 1)[0])
	f.serve = proctest.Start(t, binary, t.TempDir(), f.env, "serve", "--listen", addr, "--drain-delay", "0s")
	f.serve.WaitFor(t, "web node serving", 60*time.Second)
	f.work = proctest.Start(t, binary, t.TempDir(), f.env, append([]string{"work", "--queue", "high,default,emails"}, workArgs...)...)
	f.work.WaitFor(t, "worker started", 60*time.Second)
	for _, p := range []*proctest.Proc{f.serve, f.work} {
		if !strings.Contains(p.Stderr.String(), "tracing on") {
			t.Fatalf("%s did not say tracing is on:\n%s", p.Name, p.Stderr)
		}
	}
	f.base = "http://" + addr
	return f
}

// waitTrace polls Jaeger until the trace of the one request named op holds
// every span ok asks for: the batch processors of two processes export on
// their own schedule.
func (f *tracedFarm) waitTrace(t *testing.T, op string, ok func(jaegertest.Trace) error) jaegertest.Trace {
	t.Helper()
	var tr jaegertest.Trace
	proctest.Eventually(t, 30*time.Second, "the trace of "+op+" in Jaeger", func() error {
		traces, err := f.jaeger.Find("catalog", op)
		if err != nil {
			return err
		}
		if len(traces) != 1 {
			return fmt.Errorf("%d traces of %s, want 1", len(traces), op)
		}
		tr = traces[0]
		return ok(tr)
	})
	return tr
}

// one returns the only span of tr named op.
func one(tr jaegertest.Trace, op string) (jaegertest.Span, error) {
	spans := tr.Named(op)
	if len(spans) != 1 {
		return jaegertest.Span{}, fmt.Errorf("%d spans named %q, want 1 (have %s)", len(spans), op, names(tr))
	}
	return spans[0], nil
}

func names(tr jaegertest.Trace) string {
	var out []string
	for _, s := range tr.Spans {
		out = append(out, s.OperationName)
	}
	return strings.Join(out, ", ")
}

// pid is the process.pid tag of the process that sent s.
func pid(tr jaegertest.Trace, s jaegertest.Span) string {
	for _, kv := range tr.Processes[s.ProcessID].Tags {
		if kv.Key == "process.pid" {
			return fmt.Sprint(kv.Value)
		}
	}
	return ""
}

// TestTraceOfAnUploadCrossesServeAndWork drives the catalog as a user
// does (login, create an item, upload an image) against `catalog serve`
// and `catalog work` run as two processes with OTEL_EXPORTER_OTLP_ENDPOINT
// pointing at a real Jaeger, and reads back from Jaeger's API one trace
// holding the upload's HTTP span (named by its route pattern), its
// read-model query, its Object Store put, the dispatch, and the worker's
// attempt as a child of the dispatch in the other process, with the
// worker's own Object Store read; the worker's log lines about the job
// carry that trace's ID.
func TestTraceOfAnUploadCrossesServeAndWork(t *testing.T) {
	f := newTracedFarm(t)
	c := ct.NewClient(t, f.base)
	c.Login("ann")
	item := c.CreateItem("lamp", "brass")
	if code, body := c.Upload(item.ID, ct.File{Name: "lamp.png", Data: ct.PNG(320, 200)}); code != http.StatusAccepted {
		t.Fatalf("upload: %d %s", code, body)
	}
	c.WaitImages(item.ID, 30*time.Second, "lamp.png")

	const route = "POST /items/{id}/images"
	var httpSpan, dispatch, attempt jaegertest.Span
	tr := f.waitTrace(t, route, func(tr jaegertest.Trace) error {
		var err error
		if httpSpan, err = one(tr, route); err != nil {
			return err
		}
		if dispatch, err = one(tr, "dispatch process-item-images"); err != nil {
			return err
		}
		if attempt, err = one(tr, "process process-item-images"); err != nil {
			return err
		}
		for _, op := range []string{"objectstore put", "objectstore get", "SELECT", "session load"} {
			if len(tr.Named(op)) == 0 {
				return fmt.Errorf("no %q span yet (have %s)", op, names(tr))
			}
		}
		return nil
	})
	if httpSpan.Tag("http.route") != "/items/{id}/images" || httpSpan.Tag("http.response.status_code") != "202" {
		t.Errorf("HTTP span: route %q status %q", httpSpan.Tag("http.route"), httpSpan.Tag("http.response.status_code"))
	}
	if dispatch.Parent() != httpSpan.SpanID {
		t.Errorf("the dispatch's parent is %q, want the HTTP span %s", dispatch.Parent(), httpSpan.SpanID)
	}
	if attempt.Parent() != dispatch.SpanID {
		t.Errorf("the attempt's parent is %q, want the dispatch %s", attempt.Parent(), dispatch.SpanID)
	}
	for tag, want := range map[string]string{"jetfleet.queue": "high", "jetfleet.job.kind": "process-item-images",
		"jetfleet.job.attempt": "1", "jetfleet.job.outcome": "succeeded", "jetfleet.job.id": dispatch.Tag("messaging.message.id")} {
		if got := attempt.Tag(tag); got != want || got == "" {
			t.Errorf("attempt span: %s = %q, want %q", tag, got, want)
		}
	}
	if pid(tr, httpSpan) == pid(tr, attempt) || pid(tr, attempt) == "" {
		t.Errorf("the HTTP span and the attempt come from processes %q and %q, want two", pid(tr, httpSpan), pid(tr, attempt))
	}
	t.Logf("trace %s: %s", tr.TraceID, names(tr))
	checkQuerySpans(t, tr)
	checkJobLogs(t, f.work.Stderr.String(), tr.TraceID, attempt.SpanID)
}

// checkQuerySpans checks the read-model spans: where each went and why,
// and that no argument was recorded.
func checkQuerySpans(t *testing.T, tr jaegertest.Trace) {
	t.Helper()
	for _, s := range tr.Named("SELECT") {
		if s.Tag("jetfleet.db.target") != "primary" || s.Tag("jetfleet.db.reason") != "no_replica" || s.Tag("db.system.name") != "sqlite" {
			t.Errorf("SELECT span: target %q reason %q system %q", s.Tag("jetfleet.db.target"), s.Tag("jetfleet.db.reason"), s.Tag("db.system.name"))
		}
		if q := s.Tag("db.query.text"); !strings.Contains(q, "?") || strings.Contains(q, "ann") {
			t.Errorf("SELECT span's statement %q: want placeholders, no arguments", q)
		}
	}
}

// checkJobLogs checks that the worker's lines about the job carry the
// trace ID Jaeger shows.
func checkJobLogs(t *testing.T, stderr, traceID, spanID string) {
	t.Helper()
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(stderr))
	for sc.Scan() {
		var line struct {
			Message string `json:"message"`
			Kind    string `json:"kind"`
			TraceID string `json:"trace_id"`
			SpanID  string `json:"span_id"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.TraceID == "" {
			continue
		}
		if line.TraceID == traceID && line.SpanID == spanID {
			seen[line.Message] = true
		}
	}
	for _, msg := range []string{"job succeeded", "thumbnails made"} {
		if !seen[msg] {
			t.Errorf("no %q line with trace_id %s and span_id %s in the worker's log:\n%s", msg, traceID, spanID, stderr)
		}
	}
}
