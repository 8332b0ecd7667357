package bus

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// The JSON form of a job record (JobStatus), the wire format of
// HistoryStream. Workers write one for every job, so it is built by hand,
// without reflection; reading goes through encoding/json.

// statusJSON is the JSON form of JobStatus, for decoding.
type statusJSON struct {
	ID            string            `json:"id"`
	Queue         string            `json:"queue"`
	Kind          string            `json:"kind"`
	State         JobState          `json:"state"`
	At            time.Time         `json:"at"`
	Seq           uint64            `json:"seq"`
	Attempt       int               `json:"attempt"`
	Tries         int               `json:"tries"`
	EnqueuedAt    time.Time         `json:"enqueued_at"`
	StartedAt     time.Time         `json:"started_at"`
	FinishedAt    time.Time         `json:"finished_at"`
	RunSeconds    float64           `json:"run_seconds"`
	Worker        string            `json:"worker"`
	Progress      *Progress         `json:"progress"`
	Result        json.RawMessage   `json:"result"`
	Error         string            `json:"error"`
	NextAttemptAt time.Time         `json:"next_attempt_at"`
	ReadyAt       time.Time         `json:"ready_at"`
	Tags          []string          `json:"tags"`
	Headers       map[string]string `json:"headers"`
	Body          json.RawMessage   `json:"body"`
	BodyText      *string           `json:"body_text"`
	BodyBytes     int               `json:"body_bytes"`
	DeadLetter    *struct {
		Seq     uint64 `json:"seq"`
		Subject string `json:"subject"`
	} `json:"dead_letter"`
	Note string `json:"note"`
}

// UnmarshalJSON reads a record in the wire format.
func (s *JobStatus) UnmarshalJSON(b []byte) error {
	var j statusJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = JobStatus{
		ID: j.ID, Queue: j.Queue, Kind: j.Kind, State: j.State, At: j.At, Seq: j.Seq,
		Attempt: j.Attempt, Tries: j.Tries, EnqueuedAt: j.EnqueuedAt, StartedAt: j.StartedAt, FinishedAt: j.FinishedAt,
		RunTime: time.Duration(j.RunSeconds * float64(time.Second)), Worker: j.Worker, Progress: j.Progress,
		Result: j.Result, Error: j.Error, NextAttemptAt: j.NextAttemptAt, ReadyAt: j.ReadyAt, Tags: j.Tags,
		Headers: j.Headers, BodyBytes: j.BodyBytes, Note: j.Note,
	}
	switch {
	case len(j.Body) > 0:
		s.Body = j.Body
	case j.BodyText != nil:
		s.Body = []byte(*j.BodyText)
	}
	if j.DeadLetter != nil {
		s.DeadLetter = &FailedJob{ID: j.ID, Queue: j.Queue, Kind: j.Kind, Seq: j.DeadLetter.Seq, Subject: j.DeadLetter.Subject, Error: j.Error}
	}
	return nil
}

// MarshalJSON writes s in the wire format; zero fields are left out.
func (s *JobStatus) MarshalJSON() ([]byte, error) {
	return s.AppendJSON(make([]byte, 0, 512)), nil
}

// AppendJSON appends s in the wire format to b. It is what workers write
// for every job, so it builds the JSON by hand, without reflection.
func (s *JobStatus) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendString(b, s.ID)
	b = append(b, `,"queue":`...)
	b = appendString(b, s.Queue)
	b = append(b, `,"kind":`...)
	b = appendString(b, s.Kind)
	b = append(b, `,"state":`...)
	b = appendString(b, string(s.State))
	b = appendTime(b, "at", s.At)
	if s.Seq > 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, s.Seq, 10)
	}
	b = appendInt(b, "attempt", s.Attempt)
	b = appendInt(b, "tries", s.Tries)
	b = appendTime(b, "enqueued_at", s.EnqueuedAt)
	b = appendTime(b, "started_at", s.StartedAt)
	b = appendTime(b, "finished_at", s.FinishedAt)
	if s.RunTime > 0 {
		b = append(b, `,"run_seconds":`...)
		b = strconv.AppendFloat(b, s.RunTime.Seconds(), 'f', -1, 64)
	}
	if s.Worker != "" {
		b = append(b, `,"worker":`...)
		b = appendString(b, s.Worker)
	}
	if p := s.Progress; p != nil {
		b = append(b, `,"progress":{"done":`...)
		b = strconv.AppendFloat(b, p.Done, 'f', -1, 64)
		if p.Message != "" {
			b = append(b, `,"message":`...)
			b = appendString(b, p.Message)
		}
		b = appendTime(b, "at", p.At)
		b = append(b, '}')
	}
	if len(s.Result) > 0 {
		b = append(b, `,"result":`...)
		b = append(b, s.Result...)
	}
	if s.Error != "" {
		b = append(b, `,"error":`...)
		b = appendString(b, s.Error)
	}
	b = appendTime(b, "next_attempt_at", s.NextAttemptAt)
	b = appendTime(b, "ready_at", s.ReadyAt)
	if len(s.Tags) > 0 {
		b = append(b, `,"tags":[`...)
		for i, t := range s.Tags {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, t)
		}
		b = append(b, ']')
	}
	if len(s.Headers) > 0 {
		b = append(b, `,"headers":{`...)
		b = appendHeaders(b, s.Headers)
		b = append(b, '}')
	}
	switch {
	case len(s.Body) == 0:
	case json.Valid(s.Body):
		b = append(b, `,"body":`...)
		b = append(b, s.Body...)
	default:
		b = append(b, `,"body_text":`...)
		b = appendString(b, string(s.Body))
	}
	b = appendInt(b, "body_bytes", s.BodyBytes)
	if dl := s.DeadLetter; dl != nil {
		b = append(b, `,"dead_letter":{"seq":`...)
		b = strconv.AppendUint(b, dl.Seq, 10)
		b = append(b, `,"subject":`...)
		b = appendString(b, dl.Subject)
		b = append(b, '}')
	}
	if s.Note != "" {
		b = append(b, `,"note":`...)
		b = appendString(b, s.Note)
	}
	return append(b, '}')
}

func appendTime(b []byte, name string, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':', '"')
	b = appendRFC3339Nano(b, t.UTC())
	return append(b, '"')
}

// appendRFC3339Nano appends t, in UTC, as t.AppendFormat(b,
// time.RFC3339Nano) does, in a third of its time: a record holds four or
// five times, and every job writes one.
func appendRFC3339Nano(b []byte, t time.Time) []byte {
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, time.RFC3339Nano)
	}
	hour, minute, sec := t.Clock()
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	if ns := t.Nanosecond(); ns > 0 {
		digits := 9
		for ns%10 == 0 {
			ns /= 10
			digits--
		}
		b = append(b, '.')
		b = appendDigits(b, ns, digits)
	}
	return append(b, 'Z')
}

// appendDigits appends n, 0 ≤ n < 10^width, as width decimal digits.
func appendDigits(b []byte, n, width int) []byte {
	var buf [9]byte
	for i := width - 1; i >= 0; i-- {
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, buf[:width]...)
}

func appendInt(b []byte, name string, n int) []byte {
	if n == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, int64(n), 10)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= ' ' && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendHeaders appends h's pairs as JSON members, sorted by key. A job
// with tracing on has one header (traceparent), which needs no sorting.
func appendHeaders(b []byte, h map[string]string) []byte {
	pair := func(b []byte, k string) []byte {
		b = appendString(b, k)
		b = append(b, ':')
		return appendString(b, h[k])
	}
	if len(h) == 1 {
		for k := range h {
			b = pair(b, k)
		}
		return b
	}
	for i, k := range slices.Sorted(maps.Keys(h)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = pair(b, k)
	}
	return b
}
