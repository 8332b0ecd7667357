package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// The job history and job control of the wire contract. Every job's
// latest record is kept in HistoryStream on
// jetfleet.status.<queue>.<kind>.<id> (one message per subject, so a new
// record replaces the one before), written by the party that knows the
// state: the worker when a job succeeds, is cancelled, fails an attempt or
// reports progress, and the Inspector when it cancels a job nobody runs.
// Waiting, delayed and dead jobs need no record: they are found by ID in
// JOBS and DLQ. Running jobs answer from the worker's memory over core
// NATS. The stream's MaxAge (Config.CompletedRetention) and MaxBytes
// (Config.HistoryMaxBytes) bound it.
const (
	// HistoryStream holds the job records and the tag index.
	HistoryStream = "JETFLEET_HISTORY"
	// StatusPrefix starts every job record's subject:
	// jetfleet.status.<queue>.<kind>.<id>, the ID written as in DLQPrefix.
	StatusPrefix = "jetfleet.status"
	// TagsPrefix starts every tag index entry's subject:
	// jetfleet.tags.<tag>.<id>, one per tag of a job, written when it is
	// dispatched.
	TagsPrefix = "jetfleet.tags"
	// HeaderTags carries a job's tags, comma separated.
	HeaderTags = "Jetfleet-Tags"
	// CancelPrefix starts the core NATS subject that cancels a running
	// job, jetfleet.jobs.cancel.<id>: the worker running it cancels its
	// context and, when the message has a reply subject, answers with its
	// record.
	CancelPrefix = "jetfleet.jobs.cancel"
	// LocatePrefix starts the core NATS subject the worker running a job
	// answers with the job's running record, jetfleet.jobs.locate.<id>.
	LocatePrefix = "jetfleet.jobs.locate"
	// RunningSubject is the core NATS subject every worker process answers
	// with a JSON array of the records of the jobs it runs.
	RunningSubject = wire.RunningSubject
	// QueueCancelPrefix starts the core NATS subject that cancels the
	// running jobs of a queue stored up to a JOBS sequence,
	// jetfleet.queues.cancel.<queue>, body {"up_to_seq":N}.
	QueueCancelPrefix = "jetfleet.queues.cancel"
)

// Limits of the job history.
const (
	// MaxTags is how many tags one job may carry (Tags).
	MaxTags = wire.MaxTags
	// MaxTagLen is the longest tag, in bytes.
	MaxTagLen = wire.MaxTagLen
	// MaxResult is the largest result a job may store, as JSON.
	MaxResult = 64 << 10
	// MaxRecordBody is the largest job body a record keeps; a larger one
	// is left out and its size noted (body_bytes).
	MaxRecordBody = 4 << 10
	// MaxProgressMessage is the longest progress message kept; a longer
	// one is cut.
	MaxProgressMessage = 256
	// ProgressInterval is how often at most a running job's progress is
	// written to HistoryStream: the first report at once, then at most
	// one a second, the latest value winning. Readers asking the worker
	// directly (LocatePrefix) always get the latest.
	ProgressInterval = time.Second
)

// JobState is where a job is in its life.
type JobState string

// The states of a job.
const (
	// JobDelayed: waiting in JetStream's scheduler for its time.
	JobDelayed JobState = "delayed"
	// JobReady: in JOBS, waiting for a worker (also after an attempt
	// whose worker died, until it is delivered again).
	JobReady JobState = "ready"
	// JobRunning: a worker runs it now.
	JobRunning JobState = "running"
	// JobRetrying: an attempt failed; the next one starts at NextAttemptAt.
	JobRetrying JobState = "retrying"
	// JobSucceeded: it ran to success.
	JobSucceeded JobState = "succeeded"
	// JobDead: it failed for good and is in DLQ.
	JobDead JobState = "dead"
	// JobCancelled: cancelled before or while it ran; it does not run again.
	JobCancelled JobState = "cancelled"
)

// Finished reports whether s is a final state: succeeded, dead or cancelled.
func (s JobState) Finished() bool {
	return s == JobSucceeded || s == JobDead || s == JobCancelled
}

// Progress is what a running job last reported about itself.
type Progress struct {
	// Done is how much of the work is done, from 0 to 1.
	Done float64 `json:"done"`
	// Message says what it is doing ("resizing 2 of 5").
	Message string `json:"message,omitempty"`
	// At is when it was reported.
	At time.Time `json:"at"`
}

// JobStatus is what is known of one job: a record of HistoryStream as
// workers write it (its JSON is the wire format), or what
// Inspector.Job found out from JOBS, DLQ, the workers and that record.
type JobStatus struct {
	// ID, Queue and Kind identify the job.
	ID, Queue, Kind string
	// State is where the job is.
	State JobState
	// At is when the state was recorded (or, for a waiting job, observed).
	At time.Time
	// Seq is the job's sequence in JOBS (its current or last delivery).
	Seq uint64
	// Attempt is the number of the attempt the state is about (from 1);
	// Tries how many the job may use (0 when the worker's default applies
	// and it has not run).
	Attempt, Tries int
	// EnqueuedAt is when JOBS stored the job (when its delay ended, for a
	// delayed one).
	EnqueuedAt time.Time
	// StartedAt and FinishedAt bound the attempt; RunTime is their
	// difference for a finished attempt.
	StartedAt, FinishedAt time.Time
	RunTime               time.Duration
	// Worker is the process that runs or ran it, "host:pid".
	Worker string
	// Progress is the last progress the job reported; nil when none.
	Progress *Progress
	// Result is the JSON the job stored with SetResult; nil when none.
	Result json.RawMessage
	// Error is the error of the last failed attempt.
	Error string
	// NextAttemptAt is when a retrying job runs again.
	NextAttemptAt time.Time
	// ReadyAt is when a delayed job becomes ready.
	ReadyAt time.Time
	// Tags are the job's tags (Tags).
	Tags []string
	// Headers are the job's own headers (not Nats-*), one value each.
	Headers map[string]string
	// Body is the job's arguments (JSON by contract) when known;
	// BodyBytes is the size of a body too large for a record
	// (MaxRecordBody), which is then not kept.
	Body      []byte
	BodyBytes int
	// DeadLetter is the dead letter of a dead job.
	DeadLetter *FailedJob
	// Note explains a state the data cannot say alone ("delivered before:
	// its worker stopped; it is delivered again after AckWait").
	Note string
}

// IDToken is job id as the last token of the subjects that hold it
// (jobs.<queue>.<kind>.<id>, dlq.…, jetfleet.status.…): the ID itself when
// it is a valid subject token of at most 128 bytes, else "h-" and the
// base64url of the first 18 bytes of its SHA-256.
func IDToken(id string) string { return wire.IDToken(id) }

// StatusSubject is the subject of the record of job id of queue and kind
// in HistoryStream: jetfleet.status.<queue>.<kind>.<id>.
func StatusSubject(queue, kind, id string) string { return wire.StatusSubject(queue, kind, id) }

var recordBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// PublishStatus writes s as the latest record of its job to HistoryStream
// with a plain NATS publish: not acknowledged and not awaited, like an
// ack (call nc.Flush before the process exits). It is what workers do at
// each state change; a program that runs jobs itself can do the same.
func PublishStatus(nc *nats.Conn, s *JobStatus) error {
	bp := recordBuffers.Get().(*[]byte)
	b := s.AppendJSON((*bp)[:0])
	err := nc.Publish(wire.StatusSubject(s.Queue, s.Kind, s.ID), b)
	if cap(b) <= 64<<10 {
		*bp = b
		recordBuffers.Put(bp)
	}
	if err != nil {
		return fmt.Errorf("bus: write the record of job %s: %w", s.ID, err)
	}
	return nil
}

// RecordHeaders are the headers of h a record keeps: every header but
// the Nats-* ones, one value each; nil when there is none. A trace that
// was not sampled (traceparent's sampled flag off) is left out with its
// tracestate: no backend holds it, and every record would carry it.
func RecordHeaders(h nats.Header) map[string]string {
	unsampled := isUnsampled(h[HeaderTraceparent])
	var out map[string]string
	for k, vs := range h {
		if strings.HasPrefix(k, "Nats-") || len(vs) == 0 ||
			unsampled && (k == HeaderTraceparent || k == HeaderTracestate) {
			continue
		}
		if out == nil {
			out = make(map[string]string, len(h))
		}
		out[k] = vs[0]
	}
	return out
}

// isUnsampled reports whether traceparent is a well-formed W3C value
// whose sampled flag is off: "00-<trace ID>-<span ID>-<flags>", the flags'
// lowest bit clear.
func isUnsampled(traceparent []string) bool {
	if len(traceparent) == 0 || len(traceparent[0]) != 55 {
		return false
	}
	flags, err := strconv.ParseUint(traceparent[0][53:], 16, 8)
	return err == nil && traceparent[0][52] == '-' && flags&1 == 0
}

// ParseTags reads the Jetfleet-Tags header of h; nil when there is none.
func ParseTags(h nats.Header) []string {
	v := h.Get(HeaderTags)
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// HistoryStats is the size of HistoryStream.
type HistoryStats struct {
	// Messages counts the records and the tag index entries.
	Messages uint64 `json:"messages"`
	// Bytes is what they take; MaxBytes the stream's limit.
	Bytes    uint64 `json:"bytes"`
	MaxBytes int64  `json:"max_bytes"`
	// Retention is the stream's MaxAge.
	Retention time.Duration `json:"retention_ns"`
}

// History returns the size of HistoryStream with one stream info request;
// nil when there is no history (Config.NoHistory, or not provisioned).
func (in *Inspector) History(ctx context.Context) (*HistoryStats, error) {
	s, err := in.js.Stream(ctx, HistoryStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bus: stream %s: %w", HistoryStream, err)
	}
	info := s.CachedInfo()
	return &HistoryStats{Messages: info.State.Msgs, Bytes: info.State.Bytes, MaxBytes: info.Config.MaxBytes, Retention: info.Config.MaxAge}, nil
}
