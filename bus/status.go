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

// ErrJobNotFound is wrapped when no job with the given ID is known: not
// waiting, delayed, running or dead, and not in the history (finished
// longer ago than Config.CompletedRetention, or never dispatched).
var ErrJobNotFound = errors.New("no job with this ID")

// ErrJobFinished is wrapped when a job to cancel has already finished
// (succeeded, dead or cancelled).
var ErrJobFinished = errors.New("job already finished")

// locateWait bounds the wait for the worker that runs a job. It is paid
// only for a job that was delivered and is not acknowledged yet, is not
// waiting out a retry's backoff, and whose worker does not answer: one
// whose worker stopped, that waits for a slot in a worker, or whose next
// attempt is due and not taken yet.
const locateWait = 500 * time.Millisecond

// Job returns what is known of the job id, whatever its state: delayed
// (in the scheduler), ready (in JOBS, waiting for a worker), running (on
// which worker, since when, which attempt, its last progress), retrying
// (the next attempt's time), succeeded (when, run time, result), dead
// (with its dead letter) or cancelled. An unknown ID is an error wrapping
// ErrJobNotFound.
//
// It reads by ID, never by scanning: one direct get of the last message
// on each of jobs.*.*.<id> (JOBS), schedules.delay.*.<id> (JOBS),
// dlq.*.*.<id> (DLQ) and jetfleet.status.*.*.<id> (HistoryStream), sent at
// once; then, for a job in JOBS, the info of its queue's consumer (was it
// delivered?) and, for a delivered one, a core NATS request answered by
// the worker that runs it (LocatePrefix).
func (in *Inspector) Job(ctx context.Context, id string) (*JobStatus, error) {
	f, err := in.find(ctx, id)
	if err != nil {
		return nil, err
	}
	return in.resolve(ctx, f, nil)
}

// found is what the direct gets of one ID returned.
type found struct {
	id                 string
	job, delayed, dead *jetstream.RawStreamMsg
	rec                *JobStatus
}

// find reads the four places a job can be, at once.
func (in *Inspector) find(ctx context.Context, id string) (*found, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: the job ID is empty", ErrInvalid)
	}
	f := &found{id: id}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	wg.Go(func() { f.job, errs[0] = in.lastMsg(ctx, JobsStream, wire.JobFilterForID(id)) })
	wg.Go(func() { f.delayed, errs[1] = in.lastMsg(ctx, JobsStream, wire.DelayFilterForID(id)) })
	wg.Go(func() { f.dead, errs[2] = in.lastMsg(ctx, DLQStream, wire.DLQFilterForID(id)) })
	wg.Go(func() { f.rec, errs[3] = in.record(ctx, id) })
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if f.job == nil {
		m, err := in.jobBySeq(ctx, id)
		if err != nil {
			return nil, err
		}
		f.job = m
	}
	return f, nil
}

// jobBySeq finds a job published without an ID token (`nats pub
// jobs.<queue>.<kind>`), whose ID is its JOBS sequence; nil when id is
// not such a job.
func (in *Inspector) jobBySeq(ctx context.Context, id string) (*jetstream.RawStreamMsg, error) {
	seq, err := strconv.ParseUint(id, 10, 64)
	if err != nil || seq == 0 || strconv.FormatUint(seq, 10) != id {
		return nil, nil
	}
	m, err := in.getMsg(ctx, JobsStream, directGetRequest{Seq: seq})
	if m == nil || err != nil {
		return nil, err
	}
	if mid, _ := jobID(m.Header, m.Sequence); strings.Count(m.Subject, ".") != 2 || !strings.HasPrefix(m.Subject, JobsPrefix+".") || mid != id {
		return nil, nil
	}
	return m, nil
}

// lastMsg is the last message of stream on subject (wildcards allowed),
// with one direct get; nil when there is none or the stream does not
// exist.
func (in *Inspector) lastMsg(ctx context.Context, stream, subject string) (*jetstream.RawStreamMsg, error) {
	return in.getMsg(ctx, stream, directGetRequest{LastFor: subject})
}

// getMsg is one direct get on stream; nil when it finds nothing or no
// server answers (a history stream that is not there). JOBS and DLQ are
// there: no answer from them is a moment of the cluster, and it asks
// again (askAgain).
func (in *Inspector) getMsg(ctx context.Context, stream string, req directGetRequest) (*jetstream.RawStreamMsg, error) {
	get := directGet
	if stream == JobsStream || stream == DLQStream {
		get = directGetExisting
	}
	msg, err := get(ctx, in.js, stream, req)
	if errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, nats.ErrNoResponders) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return rawFromDirect(msg)
}

// rawFromDirect turns a direct get's reply into the stored message, its
// headers without the ones the server adds to the reply.
func rawFromDirect(msg *nats.Msg) (*jetstream.RawStreamMsg, error) {
	seq, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("bus: direct get reply without a sequence (%s)", msg.Header.Get("Status"))
	}
	ts, _ := time.Parse(time.RFC3339Nano, msg.Header.Get(jetstream.TimeStampHeaer))
	m := &jetstream.RawStreamMsg{Subject: msg.Header.Get(jetstream.SubjectHeader), Sequence: seq, Data: msg.Data, Time: ts, Header: nats.Header{}}
	for k, vs := range msg.Header {
		if !isDirectHeader(k) {
			m.Header[k] = vs
		}
	}
	return m, nil
}

func isDirectHeader(k string) bool {
	for _, h := range directGetHeaders {
		if k == h {
			return true
		}
	}
	return false
}

// record is job id's latest record in HistoryStream; nil when it has none.
func (in *Inspector) record(ctx context.Context, id string) (*JobStatus, error) {
	m, err := in.lastMsg(ctx, HistoryStream, wire.StatusFilterForID(id))
	if m == nil || err != nil {
		return nil, err
	}
	return recordFromMsg(m), nil
}

// recordFromMsg decodes a record of HistoryStream; nil when it is not one.
func recordFromMsg(m *jetstream.RawStreamMsg) *JobStatus {
	var st JobStatus
	if json.Unmarshal(m.Data, &st) != nil || st.ID == "" {
		return nil
	}
	if st.At.IsZero() {
		st.At = m.Time
	}
	return &st
}

// statusFromJob is what a job's message in JOBS says of it.
func statusFromJob(m *jetstream.RawStreamMsg) *JobStatus {
	id, _ := jobID(m.Header, m.Sequence)
	st := &JobStatus{ID: id, Seq: m.Sequence, At: m.Time, EnqueuedAt: m.Time, Body: m.Data}
	st.Queue, st.Kind, _ = wire.ParseJobSubject(m.Subject)
	fillFromHeaders(st, m.Header)
	return st
}

func fillFromHeaders(st *JobStatus, h nats.Header) {
	st.Tags, st.Headers = ParseTags(h), RecordHeaders(h)
	if v := h.Get(HeaderTries); v != "" {
		st.Tries, _ = parseTries(v)
	}
}

// statusFromDelayed is what a delayed job's schedule says of it.
func statusFromDelayed(m *jetstream.RawStreamMsg) *JobStatus {
	st := &JobStatus{ID: m.Header.Get(HeaderJobID), State: JobDelayed, At: m.Time, Body: m.Data}
	st.Queue, st.Kind, _ = wire.ParseJobSubject(m.Header.Get(headerScheduleTarget))
	if at, ok := strings.CutPrefix(m.Header.Get(headerSchedule), "@at "); ok {
		st.ReadyAt, _ = time.Parse(time.RFC3339Nano, at)
	}
	fillFromHeaders(st, m.Header)
	for _, k := range []string{headerSchedule, headerScheduleTarget} {
		delete(st.Headers, k)
	}
	return st
}

// statusFromDead is what a dead letter says of its job.
func statusFromDead(m *jetstream.RawStreamMsg) *JobStatus {
	fj := failedFromMsg(m)
	st := &JobStatus{ID: fj.ID, Queue: fj.Queue, Kind: fj.Kind, State: JobDead, At: fj.FailedAt, FinishedAt: fj.FailedAt,
		Attempt: fj.Attempts, Error: fj.Error, Body: fj.Body, DeadLetter: fj}
	fillFromHeaders(st, fj.Header)
	for _, k := range dlqOnlyHeaders {
		delete(st.Headers, k)
	}
	delete(st.Headers, HeaderJobID)
	return st
}

// fillFromDeadRecord completes a dead job's status st from its last
// record, when that record is of the dead message: the tries (the
// worker's, when the job set none) and, when the record is of the very
// attempt that died (its progress), its worker, start, progress and
// result. A record of an earlier attempt (retrying) says nothing of the
// last one's worker or start.
func fillFromDeadRecord(st *JobStatus, r *JobStatus) {
	if r == nil || r.Seq != seqOfOrigin(st.DeadLetter.Origin) {
		return
	}
	if st.Tries == 0 {
		st.Tries = r.Tries
	}
	if r.Attempt == st.Attempt {
		st.Worker, st.StartedAt, st.RunTime, st.Progress, st.Result = r.Worker, r.StartedAt, r.RunTime, r.Progress, r.Result
	}
}

// resolve decides the state from what find found. running, when not nil,
// holds the records of every running job by ID (a listing asks all
// workers once); otherwise the worker of a delivered job is asked.
func (in *Inspector) resolve(ctx context.Context, f *found, running map[string]*JobStatus) (*JobStatus, error) {
	switch {
	case f.job != nil:
		return in.resolveInJobs(ctx, f, running)
	case f.delayed != nil && f.rec != nil && f.rec.State == JobRetrying:
		return f.rec, nil // its retry, stored again as a delayed job (RetryLater), waits
	case f.delayed != nil && (f.rec == nil || f.delayed.Time.After(f.rec.At)):
		return statusFromDelayed(f.delayed), nil
	case f.dead != nil && (f.rec == nil || !f.rec.At.After(f.dead.Time)):
		st := statusFromDead(f.dead)
		fillFromDeadRecord(st, f.rec)
		return st, nil
	case f.rec != nil:
		st := f.rec
		if !st.State.Finished() {
			st.Note = "its message is no longer in " + JobsStream + " and no final record was written: it was removed (queue clear, or taken with the nats CLI), or its worker's last record was lost"
		}
		return st, nil
	}
	return nil, fmt.Errorf("%w: %q (not waiting, delayed, running or dead, and not in the history of the last %s)", ErrJobNotFound, f.id, in.retention())
}

// retention is the history's MaxAge as configured, for messages.
func (in *Inspector) retention() time.Duration {
	if in.cfg.CompletedRetention > 0 {
		return in.cfg.CompletedRetention
	}
	return wire.DefaultCompletedRetention
}

func seqOfOrigin(origin string) uint64 {
	seq, _ := strconv.ParseUint(strings.TrimPrefix(origin, JobsStream+":"), 10, 64)
	return seq
}

// resolveInJobs decides the state of a job whose message is in JOBS:
// ready when its queue's consumer has not delivered it yet; retrying when
// its last attempt failed and the next is not due (no worker can be
// running it: it is not asked); else running when a worker says so, and
// ready otherwise (its next attempt due, or delivered again after
// AckWait). A lookup that waited for a worker reads the job's record
// again: an attempt may have ended meanwhile.
func (in *Inspector) resolveInJobs(ctx context.Context, f *found, running map[string]*JobStatus) (*JobStatus, error) {
	st := statusFromJob(f.job)
	st.State = JobReady
	delivered, err := in.delivered(ctx, st.Queue, st.Seq)
	if err != nil || !delivered {
		return st, err
	}
	rec := f.rec
	if rec != nil && rec.Seq == st.Seq && rec.State == JobRetrying && time.Now().Before(rec.NextAttemptAt) {
		return fromRecord(st, rec), nil
	}
	var run *JobStatus
	if running != nil {
		run = running[st.ID]
	} else if run, err = in.locate(ctx, st.ID); err != nil {
		return nil, err
	} else if run == nil {
		again, err := in.record(ctx, st.ID)
		if err != nil {
			return nil, err
		}
		if again != nil {
			rec = again
		}
	}
	if run != nil {
		run.Tags, run.Headers, run.Body = st.Tags, st.Headers, st.Body
		return run, nil
	}
	if rec != nil && rec.Seq == st.Seq {
		return fromRecord(st, rec), nil
	}
	st.Note = "delivered to a worker and not started or finished yet: it waits for a slot there, or, if that worker stopped, is delivered again after AckWait"
	return st, nil
}

// fromRecord is st, a job delivered from JOBS and running nowhere, as the
// record of its last attempt rec tells: finished (the record written as
// its message went), retrying until its next attempt is due, or stopped
// without finishing.
func fromRecord(st, rec *JobStatus) *JobStatus {
	if rec.State.Finished() {
		return rec
	}
	st.Attempt, st.Worker, st.Error, st.Progress, st.Result = rec.Attempt, rec.Worker, rec.Error, rec.Progress, rec.Result
	st.StartedAt, st.FinishedAt, st.RunTime = rec.StartedAt, rec.FinishedAt, rec.RunTime
	if st.Tries == 0 {
		st.Tries = rec.Tries // the worker's, when the job set none
	}
	if rec.State == JobRetrying {
		st.NextAttemptAt = rec.NextAttemptAt
		if time.Now().Before(rec.NextAttemptAt) {
			st.State, st.At = JobRetrying, rec.At
			return st
		}
		st.Note = fmt.Sprintf("attempt %d failed; the next one is due and waits for a worker", rec.Attempt)
		return st
	}
	st.Note = fmt.Sprintf("attempt %d on %s stopped without finishing (the worker stopped or died); it is delivered again after AckWait", rec.Attempt, rec.Worker)
	return st
}

// delivered reports whether queue's consumer has delivered the message
// at seq (its last delivered stream sequence is at or past it).
func (in *Inspector) delivered(ctx context.Context, queue string, seq uint64) (bool, error) {
	if queue == "" {
		return false, nil
	}
	c, err := in.js.Consumer(ctx, JobsStream, wire.ConsumerName(queue))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("bus: consumer of queue %s: %w", queue, err)
	}
	return c.CachedInfo().Delivered.Stream >= seq, nil
}

// locate asks the worker running job id for its running record; nil when
// no worker answers within locateWait.
func (in *Inspector) locate(ctx context.Context, id string) (*JobStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, locateWait)
	defer cancel()
	msg, err := in.js.Conn().RequestWithContext(ctx, wire.LocateSubject(id), nil)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bus: ask the workers for job %s: %w", id, err)
	}
	var st JobStatus
	if err := json.Unmarshal(msg.Data, &st); err != nil {
		return nil, fmt.Errorf("bus: a worker's answer about job %s: %w", id, err)
	}
	return &st, nil
}

// runningWait bounds the wait for the workers' answers to RunningSubject.
const runningWait = 500 * time.Millisecond

// Running returns the jobs running now on every worker process, newest
// start first. It sends one core NATS request on RunningSubject and
// gathers the answers until every live worker (WorkersBucket) has
// answered or half a second has passed.
func (in *Inspector) Running(ctx context.Context) ([]*JobStatus, error) {
	workers, err := in.Workers(ctx)
	if err != nil {
		return nil, err
	}
	nc := in.js.Conn()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("bus: ask the workers for their jobs: %w", err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(wire.RunningSubject, inbox, nil); err != nil {
		return nil, fmt.Errorf("bus: ask the workers for their jobs: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, runningWait)
	defer cancel()
	var out []*JobStatus
	for answers := 0; len(workers) == 0 || answers < len(workers); answers++ {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			break // the wait is over: the workers that answered are all there is
		}
		var jobs []*JobStatus
		if json.Unmarshal(msg.Data, &jobs) == nil {
			out = append(out, jobs...)
		}
	}
	sortNewest(out, func(s *JobStatus) time.Time { return s.StartedAt })
	return out, nil
}

// runningByID is Running as a map by job ID.
func (in *Inspector) runningByID(ctx context.Context) (map[string]*JobStatus, error) {
	jobs, err := in.Running(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*JobStatus, len(jobs))
	for _, j := range jobs {
		out[j.ID] = j
	}
	return out, nil
}
