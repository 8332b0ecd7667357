package bus_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// deliveredMsg is a job message as a worker receives it: what a
// publisher sent (subject, headers, body) and what JetStream adds (the
// delivery count, the stream sequence, the time it was stored).
type deliveredMsg struct {
	jetstream.Msg // the ack methods: never called here
	subject       string
	header        nats.Header
	data          []byte
	meta          jetstream.MsgMetadata
}

func (m *deliveredMsg) Subject() string                           { return m.subject }
func (m *deliveredMsg) Headers() nats.Header                      { return m.header }
func (m *deliveredMsg) Data() []byte                              { return m.data }
func (m *deliveredMsg) Metadata() (*jetstream.MsgMetadata, error) { return &m.meta, nil }

// FuzzParseJob decodes job messages whose subject, Jetfleet-* headers and
// body come from anyone who may publish to JOBS. Whatever they hold:
// parsing never panics; a refusal wraps bus.ErrInvalid; the job keeps an
// ID that can be printed and typed back; an accepted job's attempt is at
// least its delivery count (never an overflowed one), its settings are in
// range; and its dead letter (where a refused job goes, with the reason)
// is a message the server takes: a literal subject and header values
// without line breaks.
func FuzzParseJob(f *testing.F) {
	f.Add("jobs.default.send-email", "welcome-7", "", "3", "90s", "1s,10s,60s", "", "", []byte(`{"user_id":7}`), uint64(1))
	f.Add("jobs.default.send-email.welcome-7", "", "msg-1", "", "", "", "2", "1", []byte(`{}`), uint64(2))
	f.Add("jobs.default", "id\x00", "", "0", "-1s", "1s,,x", "-1", "x", []byte(`not json`), uint64(1))
	f.Add("jobs.default.send-email", "", "", "", "", "5s", "9223372036854775807", "", []byte(`{}`), uint64(1))
	f.Add("jobs.a b.c", strings.Repeat("é", 200), "", "1", "9223372036.854775807", "", "", "9223372036854775807", []byte(nil), uint64(3))
	f.Fuzz(func(t *testing.T, subject, id, msgID, tries, timeout, backoff, triesUsed, released string, body []byte, delivered uint64) {
		h := nats.Header{}
		if strings.ContainsAny(id+msgID+tries+timeout+backoff+triesUsed+released, "\r\n") {
			t.Skip("a delivered header value holds no line break: nats.go decodes a lone CR or LF as a space")
		}
		for k, v := range map[string]string{
			bus.HeaderJobID: id, bus.HeaderMsgID: msgID, bus.HeaderTries: tries, bus.HeaderTimeout: timeout,
			bus.HeaderBackoff: backoff, bus.HeaderTriesUsed: triesUsed, bus.HeaderReleased: released,
		} {
			if v != "" {
				h.Set(k, v)
			}
		}
		delivered = delivered%1000 + 1 // the server's count: from 1, never near overflow
		msg := &deliveredMsg{subject: subject, header: h, data: body, meta: jetstream.MsgMetadata{
			NumDelivered: delivered, Sequence: jetstream.SequencePair{Stream: 42}, Timestamp: time.Unix(1, 0)}}
		job, err := bus.ParseJob(msg)
		if job == nil {
			t.Fatalf("no job from a message with metadata (%v)", err)
		}
		if err != nil && !errors.Is(err, bus.ErrInvalid) {
			t.Fatalf("refusal %q does not wrap bus.ErrInvalid", err)
		}
		if job.ID == "" || strings.ContainsFunc(job.ID, unicode.IsControl) {
			t.Fatalf("job ID %q cannot be printed and typed back (error %v)", job.ID, err)
		}
		if err == nil {
			checkAccepted(t, job, delivered)
		}
		reason := "malformed job"
		if err != nil {
			reason += ": " + err.Error()
		}
		checkDeadLetter(t, wire.DeadLetterMsg(wire.DeadLetter{ID: job.ID, Queue: job.Queue, Kind: job.Kind, Seq: job.Seq,
			Header: job.Header, Body: job.Body, Reason: reason, Attempts: job.Attempt}, 1<<20))
	})
}

func checkAccepted(t *testing.T, job *bus.Job, delivered uint64) {
	t.Helper()
	if job.Attempt < int(delivered) {
		t.Fatalf("attempt %d below the delivery count %d (Jetfleet-Tries-Used %q)", job.Attempt, delivered, job.Header.Get(bus.HeaderTriesUsed))
	}
	if job.Released < 0 || job.Tries < 0 || job.Timeout < 0 {
		t.Fatalf("negative setting: released %d, tries %d, timeout %s", job.Released, job.Tries, job.Timeout)
	}
	if job.Header.Get(bus.HeaderTimeout) != "" && job.Timeout <= 0 {
		t.Fatalf("timeout %q accepted as %s", job.Header.Get(bus.HeaderTimeout), job.Timeout)
	}
	for _, d := range job.Backoff {
		if d < 0 {
			t.Fatalf("backoff %q accepted with the delay %s", job.Header.Get(bus.HeaderBackoff), d)
		}
	}
	if wire.ValidateName("queue", job.Queue) != nil || wire.ValidateName("kind", job.Kind) != nil {
		t.Fatalf("queue %q or kind %q accepted from subject %q", job.Queue, job.Kind, job.Header)
	}
}

// checkDeadLetter checks that m can be published: a subject of non-empty
// tokens without wildcards or spaces, and header keys and values without
// the line breaks that end a header on the wire.
func checkDeadLetter(t *testing.T, m *nats.Msg) {
	t.Helper()
	for _, tok := range strings.Split(m.Subject, ".") {
		if tok == "" || tok == "*" || tok == ">" || strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			t.Fatalf("dead-letter subject %q cannot be published", m.Subject)
		}
	}
	for k, vs := range m.Header {
		for _, v := range vs {
			if strings.ContainsAny(k+v, "\r\n") {
				t.Fatalf("dead-letter header %s: %q breaks the header block", k, v)
			}
		}
	}
	if m.Header.Get(bus.HeaderError) == "" {
		t.Fatalf("dead letter without its reason: %v", m.Header)
	}
	if size := wire.HeaderSize(m.Header); size > 65535 {
		t.Fatalf("dead letter with %d bytes of headers: over what JetStream stores", size)
	}
	if size := int64(len(m.Data)) + wire.HeaderSize(m.Header); size > 1<<20 {
		t.Fatalf("dead letter of %d bytes: over the max_payload of %d it was built for", size, 1<<20)
	}
}

// FuzzJobStatusJSON writes job records with the hand-written encoder
// workers use for every job (JobStatus.AppendJSON) from any text a job's
// ID, kind, error, progress message, tags, headers and body may hold, and
// reads them back as the Inspector does: the record is valid JSON and
// every field comes back as encoding/json would have written it (invalid
// UTF-8 as U+FFFD).
func FuzzJobStatusJSON(f *testing.F) {
	f.Add("welcome-7", "default", "send-email", "boom\n\"quoted\"\t\\", "rendering", "user:7", "traceparent", "00-4bf9", []byte(`{"user_id":7}`), int64(1700000000123456789), 3, 0.5)
	f.Add("\xff\xfe", "", "\u2028", "\x00\x1f\x7f", "<script>&", "a,b", "", "\xc3", []byte("not json \xff"), int64(0), 0, 0.0)
	f.Add("id", "q", "k", "", "", "", "", "", []byte(nil), int64(-62135596800000000), -1, 1.0)
	f.Fuzz(func(t *testing.T, id, queue, kind, errText, message, tag, headerKey, headerValue string, body []byte, atNS int64, attempt int, done float64) {
		at := time.Unix(0, atNS).UTC()
		in := bus.JobStatus{ID: id, Queue: queue, Kind: kind, State: bus.JobRetrying, At: at, Seq: 42,
			Attempt: attempt, Tries: 3, EnqueuedAt: at, StartedAt: at, FinishedAt: at, Worker: "host:1",
			Error: errText, NextAttemptAt: at, Tags: []string{tag}, Body: body, Note: message,
			DeadLetter: &bus.FailedJob{Seq: 7, Subject: "dlq." + queue}}
		if done >= 0 && done <= 1 { // Progress refuses anything else
			in.Progress = &bus.Progress{Done: done, Message: message, At: at}
		}
		if headerKey != "" {
			in.Headers = map[string]string{headerKey: headerValue, "traceparent": headerValue}
		}
		b := in.AppendJSON(nil)
		if !json.Valid(b) {
			t.Fatalf("record is not valid JSON: %s", b)
		}
		var out bus.JobStatus
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("record does not read back: %v\n%s", err, b)
		}
		for name, pair := range map[string][2]string{
			"id": {id, out.ID}, "queue": {queue, out.Queue}, "kind": {kind, out.Kind}, "error": {errText, out.Error},
			"note": {message, out.Note}, "dead letter subject": {"dlq." + queue, out.DeadLetter.Subject},
		} {
			if want := asJSONWrites(t, pair[0]); pair[1] != want {
				t.Fatalf("%s %q read back as %q, want %q", name, pair[0], pair[1], want)
			}
		}
		if !out.At.Equal(at) || !out.NextAttemptAt.Equal(at) || out.Attempt != attempt {
			t.Fatalf("at %s / attempt %d read back as %s / %d", at, attempt, out.At, out.Attempt)
		}
		if len(out.Tags) != 1 || out.Tags[0] != asJSONWrites(t, tag) {
			t.Fatalf("tags %q read back as %q", tag, out.Tags)
		}
		if in.Progress != nil && (out.Progress == nil || out.Progress.Done != done || out.Progress.Message != asJSONWrites(t, message)) {
			t.Fatalf("progress %+v read back as %+v", in.Progress, out.Progress)
		}
		if headerKey != "" && out.Headers[asJSONWrites(t, headerKey)] != asJSONWrites(t, headerValue) {
			t.Fatalf("headers %q read back as %q", in.Headers, out.Headers)
		}
		switch {
		case len(body) == 0 && len(out.Body) != 0:
			t.Fatalf("no body read back as %q", out.Body)
		case json.Valid(body) && !bytes.Equal(compact(t, out.Body), compact(t, body)):
			t.Fatalf("JSON body %q read back as %q", body, out.Body)
		case len(body) > 0 && !json.Valid(body) && string(out.Body) != asJSONWrites(t, string(body)):
			t.Fatalf("text body %q read back as %q", body, out.Body)
		}
	})
}

// compact is JSON b without insignificant space: a record keeps a JSON
// body as JSON, and the space around its value is not kept.
func compact(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// asJSONWrites is s as encoding/json writes and reads it back.
func asJSONWrites(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
