package bus_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

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
