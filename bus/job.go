package bus

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
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
	// Attempt is this attempt's number, from 1: the tries the job used
	// before (HeaderTriesUsed, carried by a released job) plus this
	// message's delivery count. Releases do not count.
	Attempt int
	// Released is how many times the job was released without using a
	// try (HeaderReleased).
	Released int
	// Seq is the job's sequence in the JOBS stream.
	Seq uint64
	// EnqueuedAt is when JetStream stored the job.
	EnqueuedAt time.Time
}

// ParseJob decodes a delivered message. A bad subject, a job ID with a
// control character or a malformed Jetfleet-* header is an error wrapping
// ErrInvalid that names the header; such a job can never run and belongs
// in the dead letters. The returned Job is filled as far as parsing got, so
// it can still be dead-lettered; a job whose ID is refused gets its JOBS
// sequence as its ID, which can be printed and typed back.
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
	idErr := j.setID()
	if j.Queue, j.Kind, err = wire.ParseJobSubject(msg.Subject()); err != nil {
		return j, err
	}
	if idErr != nil {
		return j, idErr
	}
	if err := j.parseCarried(); err != nil { // release.go
		return j, err
	}
	return j, j.parseSettings()
}

// setID sets j.ID from its headers, or to its sequence when it has no ID
// or one the contract refuses (the error then says which header held it).
func (j *Job) setID() error {
	id, header := jobID(j.Header, j.Seq)
	j.ID = id
	if err := wire.ValidateJobID(id); err != nil {
		j.ID = strconv.FormatUint(j.Seq, 10)
		return fmt.Errorf("header %s: %w; the job is kept under its sequence %s", header, err, j.ID)
	}
	return nil
}

// jobID is the job's ID and the header it came from ("" for the sequence).
func jobID(h nats.Header, seq uint64) (id, header string) {
	if id := h.Get(HeaderJobID); id != "" {
		return id, HeaderJobID
	}
	if id := h.Get(HeaderMsgID); id != "" {
		return id, HeaderMsgID
	}
	return strconv.FormatUint(seq, 10), ""
}

func (j *Job) parseSettings() error {
	var err error
	if v := j.Header.Get(HeaderTries); v != "" {
		if j.Tries, err = parseTries(v); err != nil {
			return fmt.Errorf("%w: header %s: %v", ErrInvalid, HeaderTries, err)
		}
	}
	if v := j.Header.Get(HeaderTimeout); v != "" {
		if j.Timeout, err = wire.ParseDuration(v); err != nil || j.Timeout <= 0 {
			return fmt.Errorf("%w: header %s=%q is not a positive duration like 90s or 90", ErrInvalid, HeaderTimeout, v)
		}
	}
	if v := j.Header.Get(HeaderBackoff); v != "" {
		if j.Backoff, err = wire.ParseBackoff(v); err != nil {
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
