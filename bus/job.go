package bus

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Job is one delivery of a job as a worker sees it: the envelope of the wire
// contract decoded from a JetStream message.
type Job struct {
	// ID is Jetfleet-Job-Id, else Nats-Msg-Id, else the stream sequence.
	ID string
	// Queue and Kind come from the subject jobs.<queue>.<kind>.
	Queue, Kind string
	// Body is the job's arguments as sent (JSON by contract).
	Body []byte
	// Header holds every header of the message, untouched.
	Header nats.Header
	// Tries, Timeout and Backoff are the job's own settings from its
	// headers; zero or nil when the job does not set them.
	Tries   int
	Timeout time.Duration
	Backoff []time.Duration
	// Attempt is this delivery's number, from 1.
	Attempt int
	// Seq is the job's sequence in the JOBS stream.
	Seq uint64
	// EnqueuedAt is when JetStream stored the job.
	EnqueuedAt time.Time
}

// ParseJob decodes a delivered message. A bad subject or a malformed
// Jetfleet-* header is an error wrapping ErrInvalid that names the header;
// such a job can never run and belongs in the dead letters. The returned Job
// is filled as far as parsing got, so it can still be dead-lettered.
func ParseJob(msg jetstream.Msg) (*Job, error) {
	meta, err := msg.Metadata()
	if err != nil {
		return nil, fmt.Errorf("bus: message on %s has no JetStream metadata: %w", msg.Subject(), err)
	}
	j := &Job{
		Body:       msg.Data(),
		Header:     msg.Headers(),
		Attempt:    int(meta.NumDelivered),
		Seq:        meta.Sequence.Stream,
		EnqueuedAt: meta.Timestamp,
	}
	j.ID = jobID(j.Header, j.Seq)
	if j.Queue, j.Kind, err = ParseJobSubject(msg.Subject()); err != nil {
		return j, err
	}
	return j, j.parseSettings()
}

func jobID(h nats.Header, seq uint64) string {
	if id := h.Get(HeaderJobID); id != "" {
		return id
	}
	if id := h.Get(HeaderMsgID); id != "" {
		return id
	}
	return strconv.FormatUint(seq, 10)
}

func (j *Job) parseSettings() error {
	var err error
	if v := j.Header.Get(HeaderTries); v != "" {
		if j.Tries, err = parseTries(v); err != nil {
			return fmt.Errorf("%w: header %s: %v", ErrInvalid, HeaderTries, err)
		}
	}
	if v := j.Header.Get(HeaderTimeout); v != "" {
		if j.Timeout, err = ParseDuration(v); err != nil || j.Timeout <= 0 {
			return fmt.Errorf("%w: header %s=%q is not a positive duration like 90s or 90", ErrInvalid, HeaderTimeout, v)
		}
	}
	if v := j.Header.Get(HeaderBackoff); v != "" {
		if j.Backoff, err = ParseBackoff(v); err != nil {
			return fmt.Errorf("%w: header %s: %v", ErrInvalid, HeaderBackoff, err)
		}
	}
	return nil
}

func parseTries(v string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%q is not an integer ≥ 1", v)
	}
	return n, nil
}

// ParseDuration reads a Go duration ("1m30s") or a number of seconds ("90").
func ParseDuration(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Duration(n * float64(time.Second)), nil
	}
	return time.ParseDuration(v)
}

// ParseBackoff reads a comma-separated list of durations ("1s,10s,60s").
func ParseBackoff(v string) ([]time.Duration, error) {
	var out []time.Duration
	for _, p := range strings.Split(v, ",") {
		d, err := ParseDuration(p)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("%q is not a list of durations like 1s,10s,60s", v)
		}
		out = append(out, d)
	}
	return out, nil
}

// FormatBackoff writes delays in the Jetfleet-Backoff header's form.
func FormatBackoff(delays []time.Duration) string {
	parts := make([]string, len(delays))
	for i, d := range delays {
		parts[i] = d.String()
	}
	return strings.Join(parts, ",")
}
