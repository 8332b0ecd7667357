package bus_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/bus"
)

// A record's JSON, written by hand for speed, is valid JSON that reads
// back into the same JobStatus, whatever its strings hold.
func TestJobStatusJSONRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 27, 9, 47, 46, 787400009, time.UTC)
	st := &bus.JobStatus{
		ID: "order \"42\"\n\\x\x01é", Queue: "default", Kind: "resize-image", State: bus.JobSucceeded, At: at, Seq: 7,
		Attempt: 2, Tries: 3, EnqueuedAt: at, StartedAt: at, FinishedAt: at.Add(1500 * time.Millisecond), RunTime: 1500 * time.Millisecond,
		Worker: "vm:19378", Progress: &bus.Progress{Done: 0.4, Message: "resizing\t2 of 5", At: at},
		Result: json.RawMessage(`{"thumbnails":5}`), Error: "attempt 1: boom\nstack", NextAttemptAt: at, ReadyAt: at,
		Tags: []string{"user:7", "order:42"}, Headers: map[string]string{"Jetfleet-Tags": "user:7,order:42", "Jetfleet-Tries": "3"},
		Body: []byte(`{"item_id":42}`), Note: "a note",
	}
	b, err := st.MarshalJSON()
	if err != nil || !json.Valid(b) {
		t.Fatalf("MarshalJSON = %s, %v: not valid JSON", b, err)
	}
	var back bus.JobStatus
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, st) {
		t.Fatalf("round trip:\n got %+v\nwant %+v\n%s", back, *st, b)
	}

	// Invalid UTF-8 becomes U+FFFD; a body that is not JSON travels as text.
	odd := &bus.JobStatus{ID: "a\xffb", State: bus.JobCancelled, Body: []byte("not json")}
	b = odd.AppendJSON(nil)
	if !json.Valid(b) {
		t.Fatalf("not valid JSON: %s", b)
	}
	if err := json.Unmarshal(b, &back); err != nil || back.ID != "a\uFFFDb" || string(back.Body) != "not json" {
		t.Fatalf("read back %+v, %v from %s", back, err, b)
	}
	if empty := (&bus.JobStatus{ID: "x", State: bus.JobRunning}).AppendJSON(nil); string(empty) != `{"id":"x","queue":"","kind":"","state":"running"}` {
		t.Fatalf("zero fields are not left out: %s", empty)
	}
}

// A record keeps a job's own headers, not the Nats-* ones, and keeps its
// trace headers only when the trace was sampled: an unsampled traceparent
// names nothing a backend holds.
func TestRecordHeadersKeepSampledTracesOnly(t *testing.T) {
	t.Parallel()
	const (
		sampled   = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
		malformed = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz"
	)
	for _, tc := range []struct {
		name        string
		traceparent string
		want        map[string]string
	}{
		{"sampled", sampled, map[string]string{"traceparent": sampled, "tracestate": "k=v", "X-Shop": "7"}},
		{"unsampled", unsampled, map[string]string{"X-Shop": "7"}},
		{"malformed", malformed, map[string]string{"traceparent": malformed, "tracestate": "k=v", "X-Shop": "7"}},
	} {
		h := nats.Header{"Nats-Msg-Id": {"a"}, "X-Shop": {"7", "8"}, bus.HeaderTraceparent: {tc.traceparent}, bus.HeaderTracestate: {"k=v"}}
		if got := bus.RecordHeaders(h); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: RecordHeaders = %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := bus.RecordHeaders(nats.Header{"Nats-Msg-Id": {"a"}}); got != nil {
		t.Errorf("only Nats-* headers: %v, want nil", got)
	}
}
