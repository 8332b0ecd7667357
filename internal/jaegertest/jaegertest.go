// Package jaegertest runs a real Jaeger (v2, github.com/jaegertracing/jaeger
// cmd/jaeger) for tests: its OTLP/HTTP receiver and its query API on
// loopback ports of their own, traces kept in memory. The binary is built
// from the separate tools module tools/jaeger (so jetfleet's go.mod does
// not carry Jaeger's dependencies) into GOPATH/bin once and reused; .ci/run
// builds it before the tests. A test skips, saying why and how to build
// it, only when it cannot be built or its run has not the time
// (toolbuild.Binary).
package jaegertest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/proctest"
	"github.com/jetfleet/jetfleet/internal/toolbuild"
)

// Version is the Jaeger release the tools module pins.
const Version = "v1.76.0"

// tool is how the binary is found and built.
func tool() toolbuild.Tool {
	return toolbuild.Tool{
		Name:    "Jaeger " + Version,
		File:    "jaeger-" + Version,
		Env:     "JETFLEET_JAEGER_BIN",
		Module:  "jaeger",
		Package: "github.com/jaegertracing/jaeger/cmd/jaeger",
		// 35 s of downloads and 6.5 minutes of compiling on a fresh 2-core
		// machine alone; about twice that beside other tests.
		BuildTime: 15 * time.Minute,
	}
}

// Built reports whether the binary is there already, for a benchmark that
// uses Jaeger when it can but would rather not build it.
func Built() bool { return toolbuild.Built(tool()) }

// Binary returns the Jaeger binary: $JETFLEET_JAEGER_BIN, else
// GOPATH/bin/jaeger-v1.76.0, built there from tools/jaeger when missing.
// It skips the test, saying how to build it, when it cannot be built or
// the test run has not the time (toolbuild.Binary).
func Binary(t testing.TB) string { return toolbuild.Binary(t, tool()) }

// Jaeger is a running Jaeger.
type Jaeger struct {
	// OTLPEndpoint is the base URL of its OTLP/HTTP receiver, the value of
	// OTEL_EXPORTER_OTLP_ENDPOINT.
	OTLPEndpoint string
	// QueryURL is the base URL of its UI and HTTP query API.
	QueryURL string
	proc     *proctest.Proc
}

// config is an all-in-one Jaeger: OTLP/HTTP in, memory storage, the query
// API; every port given, none of the defaults (4318, 16686, 8888...) used.
const config = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`

// Start runs Jaeger until the test ends and waits until its query API
// answers.
func Start(t testing.TB) *Jaeger {
	t.Helper()
	bin := Binary(t)
	ports := natstest.FreePorts(t, 3)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfgFile, fmt.Appendf(nil, config, ports[0], ports[1], ports[2]), 0o644); err != nil {
		t.Fatal(err)
	}
	j := &Jaeger{
		QueryURL:     fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		OTLPEndpoint: fmt.Sprintf("http://127.0.0.1:%d", ports[2]),
	}
	j.proc = proctest.Start(t, bin, dir, os.Environ(), "--config", cfgFile)
	proctest.Eventually(t, 60*time.Second, "Jaeger's query API answers", func() error {
		select {
		case <-j.proc.Done:
			t.Fatalf("Jaeger exited: %v\n%s", j.proc.Cmd.ProcessState, j.proc.Stderr)
		default:
		}
		_, err := j.Services()
		return err
	})
	return j
}

// Trace is a trace as Jaeger's HTTP API returns it.
type Trace struct {
	TraceID   string             `json:"traceID"`
	Spans     []Span             `json:"spans"`
	Processes map[string]Process `json:"processes"`
}

// Span is one span of a Trace.
type Span struct {
	TraceID       string      `json:"traceID"`
	SpanID        string      `json:"spanID"`
	OperationName string      `json:"operationName"`
	References    []Reference `json:"references"`
	Tags          []KeyValue  `json:"tags"`
	ProcessID     string      `json:"processID"`
	StartTime     int64       `json:"startTime"`
}

// Reference is a span's parent (CHILD_OF) or link (FOLLOWS_FROM).
type Reference struct {
	RefType string `json:"refType"`
	TraceID string `json:"traceID"`
	SpanID  string `json:"spanID"`
}

// KeyValue is a tag.
type KeyValue struct {
	Key   string `json:"key"`
	Value any    `json:"value"`
}

// Process is the resource of a span: its service and tags.
type Process struct {
	ServiceName string     `json:"serviceName"`
	Tags        []KeyValue `json:"tags"`
}

// Tag returns the span's tag key as text ("" when missing).
func (s Span) Tag(key string) string {
	for _, kv := range s.Tags {
		if kv.Key == key {
			return fmt.Sprint(kv.Value)
		}
	}
	return ""
}

// Parent is the span's CHILD_OF reference, "" for a root.
func (s Span) Parent() string {
	for _, r := range s.References {
		if r.RefType == "CHILD_OF" {
			return r.SpanID
		}
	}
	return ""
}

// Named returns the trace's spans named op.
func (tr Trace) Named(op string) []Span {
	var out []Span
	for _, s := range tr.Spans {
		if s.OperationName == op {
			out = append(out, s)
		}
	}
	return out
}

// Services lists the services Jaeger has spans of.
func (j *Jaeger) Services() ([]string, error) {
	var resp struct {
		Data []string `json:"data"`
	}
	return resp.Data, j.get("/api/services", &resp)
}

// Trace returns the trace with id.
func (j *Jaeger) Trace(id string) (Trace, error) {
	var resp struct {
		Data []Trace `json:"data"`
	}
	if err := j.get("/api/traces/"+url.PathEscape(id), &resp); err != nil {
		return Trace{}, err
	}
	if len(resp.Data) != 1 {
		return Trace{}, fmt.Errorf("trace %s: %d traces in the answer", id, len(resp.Data))
	}
	return resp.Data[0], nil
}

// Find returns the recent traces of service that hold a span named
// operation.
func (j *Jaeger) Find(service, operation string) ([]Trace, error) {
	var resp struct {
		Data []Trace `json:"data"`
	}
	q := url.Values{"service": {service}, "operation": {operation}, "limit": {"100"}, "lookback": {"1h"}}
	return resp.Data, j.get("/api/traces?"+q.Encode(), &resp)
}

func (j *Jaeger) get(path string, out any) error {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(j.QueryURL + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// CPU is the CPU time (user and system) the Jaeger process has used so
// far, from /proc/<pid>/stat at the kernel's 100 Hz tick: coarse, so read
// it around work worth seconds. A benchmark running Jaeger on its own
// machine reads what receiving and storing its spans costs there.
func (j *Jaeger) CPU() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", j.proc.Cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("jaegertest: CPU time: %w", err)
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14 and stime 15.
	_, rest, ok := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("jaegertest: CPU time: cannot read %q", b)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("jaegertest: CPU time: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}
