package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// cancelWait bounds the wait for the worker running a cancelled job to
// say it cancelled the job's context.
const cancelWait = time.Second

// maxTagCancel bounds how many jobs of one tag CancelTag looks at.
const maxTagCancel = 100_000

// Cancel cancels the job id and returns it as it was before.
//
//   - A ready, delayed or retrying job is removed from JOBS (its subject
//     purged) and never runs.
//   - A running job's context is cancelled on whichever worker runs it:
//     the Inspector publishes on jetfleet.jobs.cancel.<id> (core NATS,
//     every worker process listens), waits up to a second for that worker
//     to answer, and removes the job from JOBS. The job ends as cancelled:
//     not retried and not dead-lettered (unless its handler ignores its
//     context and returns nil: it then succeeded). A worker that fetched
//     the job but has not started it yet refuses it.
//
// The job's record in HistoryStream says cancelled (unless the history is
// off). A job of a batch counts as skipped in its batch, which still
// finishes: Finally runs, Then only with AllowFailures. A job that already
// finished is an error wrapping ErrJobFinished,
// an unknown one an error wrapping ErrJobNotFound.
func (in *Inspector) Cancel(ctx context.Context, id string) (*JobStatus, error) {
	st, err := in.Job(ctx, id)
	if err != nil {
		return nil, err
	}
	if st.State.Finished() {
		return st, fmt.Errorf("%w: %q %s at %s; there is nothing to cancel", ErrJobFinished, id, st.State, st.At.UTC().Format(time.RFC3339))
	}
	return st, in.cancelJob(ctx, st, st.State == JobRunning)
}

// cancelJob tells the workers, removes the job from JOBS and records it.
// The workers hear first: one that already holds the job unstarted then
// refuses it whenever it gets to it.
func (in *Inspector) cancelJob(ctx context.Context, st *JobStatus, wait bool) error {
	answered, err := in.signalCancel(ctx, st, wait)
	if err != nil {
		return err
	}
	if !answered { // else its worker records it in its batch
		skips := map[string][]BatchOutcome{}
		addSkip(skips, nats.Header{HeaderBatch: {st.Headers[HeaderBatch]}, HeaderBatchIndex: {st.Headers[HeaderBatchIndex]}})
		if err := in.skipInBatches(ctx, skips); err != nil {
			return err
		}
	}
	if err := in.removeJob(ctx, st); err != nil {
		return err
	}
	if err := in.freeUnique(ctx, st); err != nil {
		return err
	}
	if answered {
		return nil // the worker writes the job's record, with its run time, once its handler returns
	}
	return in.recordCancelled(ctx, st)
}

// signalCancel publishes the cancel of st on its control subject. With
// wait, it waits for the worker running it to answer with its record,
// sets st.Worker from it and reports that it answered.
func (in *Inspector) signalCancel(ctx context.Context, st *JobStatus, wait bool) (answered bool, err error) {
	nc := in.js.Conn()
	body, _ := json.Marshal(struct {
		ID string `json:"id"`
	}{st.ID})
	subject := wire.CancelSubject(st.ID)
	if wait {
		rctx, cancel := context.WithTimeout(ctx, cancelWait)
		defer cancel()
		msg, err := nc.RequestWithContext(rctx, subject, body)
		if err == nil {
			var run JobStatus
			if json.Unmarshal(msg.Data, &run) == nil && run.Worker != "" {
				st.Worker = run.Worker
			}
			return true, nil
		}
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, nats.ErrNoResponders) {
			return false, fmt.Errorf("bus: cancel job %s: %w", st.ID, err)
		}
		return false, nil // it finished meanwhile, or its worker is unreachable: it is removed below
	}
	if err := nc.Publish(subject, body); err != nil {
		return false, fmt.Errorf("bus: cancel job %s: %w", st.ID, err)
	}
	fctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if err := nc.FlushWithContext(fctx); err != nil {
		return false, fmt.Errorf("bus: cancel job %s: %w", st.ID, err)
	}
	return false, nil
}

// removeJob removes the job from JOBS: its schedule, when delayed, and its
// message (purged by subject; a job without an ID token by sequence).
func (in *Inspector) removeJob(ctx context.Context, st *JobStatus) error {
	if st.Queue == "" || st.Kind == "" {
		return fmt.Errorf("bus: cancel job %s: its queue and kind are unknown", st.ID)
	}
	// The delayed message goes too, whatever the state: a retry or a
	// release stores the job again as a delayed job before it removes
	// the message it ran from.
	for _, subject := range []string{wire.DelaySubject(st.Queue, st.ID), wire.JobIDSubject(st.Queue, st.Kind, st.ID)} {
		if _, err := purge(ctx, in.js, JobsStream, purgeRequest{Filter: subject}); err != nil {
			return fmt.Errorf("bus: cancel job %s: %w", st.ID, err)
		}
	}
	if st.Seq > 0 && strconv.FormatUint(st.Seq, 10) == st.ID {
		s, err := in.stream(ctx, JobsStream)
		if err != nil {
			return err
		}
		if err := s.DeleteMsg(ctx, st.Seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) && !isNoMessage(err) {
			return fmt.Errorf("bus: cancel job %s: %w", st.ID, err)
		}
	}
	return nil
}

// isNoMessage reports the API error of deleting a message that is gone.
func isNoMessage(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeMessageNotFound || apiErr.Code == 404)
}

// cancelledRecord is the record of st once cancelled.
func cancelledRecord(st *JobStatus, now time.Time) *JobStatus {
	rec := *st
	rec.State, rec.At, rec.FinishedAt = JobCancelled, now, now
	rec.Note = "cancelled while " + string(st.State)
	rec.DeadLetter = nil
	if len(rec.Body) > MaxRecordBody {
		rec.BodyBytes, rec.Body = len(rec.Body), nil
	}
	return &rec
}

// recordCancelled writes st's cancelled record and waits for
// HistoryStream to store it, so that a lookup right after sees it.
func (in *Inspector) recordCancelled(ctx context.Context, st *JobStatus) error {
	if in.cfg.NoHistory {
		return nil
	}
	rec := cancelledRecord(st, time.Now())
	_, err := in.js.PublishMsg(ctx, &nats.Msg{Subject: wire.StatusSubject(rec.Queue, rec.Kind, rec.ID), Data: rec.AppendJSON(nil)})
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		return nil // no history stream: nothing to record in
	}
	if err != nil {
		return fmt.Errorf("bus: job %s is cancelled, but its record was not written: %w", st.ID, err)
	}
	return nil
}

// queueCancel is the body of a message on QueueCancelPrefix.
type queueCancel struct {
	UpToSeq uint64 `json:"up_to_seq"`
}

// CancelQueue cancels every job of queue stored so far and returns how
// many: it reads each of them once (ready, running or waiting for a
// retry on jobs.<queue>.>, delayed on schedules.delay.<queue>.*, up to
// the last JOBS sequence), records it as cancelled, tells the workers
// (a core NATS message on jetfleet.queues.cancel.<queue> with that
// sequence: they stop such jobs running and refuse those they hold), and
// removes them with two purges. Jobs of batches count as skipped in their
// batches (recorded before the purges). Jobs dispatched afterwards are not
// touched.
func (in *Inspector) CancelQueue(ctx context.Context, queue string) (int, error) {
	if err := in.knownQueue(ctx, queue); err != nil {
		return 0, err
	}
	s, err := in.stream(ctx, JobsStream)
	if err != nil {
		return 0, err
	}
	last := s.CachedInfo().State.LastSeq
	filters := []string{wire.QueueFilter(queue), SchedulePrefix + ".delay." + queue + ".*"}
	skips := map[string][]BatchOutcome{}
	n, keyed, err := in.recordQueue(ctx, filters, last, skips)
	if err != nil {
		return 0, err
	}
	if err := in.skipInBatches(ctx, skips); err != nil {
		return 0, err
	}
	nc := in.js.Conn()
	body, _ := json.Marshal(queueCancel{UpToSeq: last})
	if err := nc.Publish(wire.QueueCancelSubject(queue), body); err != nil {
		return 0, fmt.Errorf("bus: cancel queue %s: %w", queue, err)
	}
	fctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if err := nc.FlushWithContext(fctx); err != nil {
		return 0, fmt.Errorf("bus: cancel queue %s: %w", queue, err)
	}
	for _, filter := range filters {
		if _, err := purge(ctx, in.js, JobsStream, purgeRequest{Filter: filter, Seq: last + 1}); err != nil {
			return n, fmt.Errorf("bus: cancel queue %s: %w", queue, err)
		}
	}
	for _, st := range keyed {
		if err := in.freeUnique(ctx, st); err != nil {
			return n, err
		}
	}
	return n, nil
}

// recordQueue reads every message on filters up to sequence last,
// writes a cancelled record for each (with asynchronous publishes awaited
// a thousand at a time; none with NoHistory), adds those of batches to
// skips, and returns how many there were, and those of them that hold a
// unique key.
func (in *Inspector) recordQueue(ctx context.Context, filters []string, last uint64, skips map[string][]BatchOutcome) (n int, keyed []*JobStatus, err error) {
	w := &recordWriter{js: in.js}
	now := time.Now()
	for _, filter := range filters {
		err := in.walk(ctx, JobsStream, filter, last, func(m *jetstream.RawStreamMsg) {
			n++
			st := statusFromJob(m)
			st.State = JobReady
			if m.Header.Get(headerSchedule) != "" {
				st = statusFromDelayed(m)
			}
			if st.Headers[HeaderUnique] != "" {
				keyed = append(keyed, st)
			}
			addSkip(skips, m.Header)
			if !in.cfg.NoHistory {
				w.write(ctx, cancelledRecord(st, now))
			}
		})
		if err != nil {
			return n, keyed, err
		}
	}
	return n, keyed, w.wait(ctx)
}

// addSkip adds to skips, by batch, the outcome of a cancelled job with
// headers h, if the job is one of a batch.
func addSkip(skips map[string][]BatchOutcome, h nats.Header) {
	if id, index, ok := BatchOf(h); ok {
		skips[id] = append(skips[id], BatchOutcome{Index: index, Result: BatchJobSkipped})
	}
}

// skipInBatches records cancelled jobs as skipped in their batches, before
// they are removed, so that each batch still finishes (a cancelled job
// never reaches a worker that would record it). A batch that is gone
// (expired) or finished is passed over.
func (in *Inspector) skipInBatches(ctx context.Context, skips map[string][]BatchOutcome) error {
	if len(skips) == 0 {
		return nil
	}
	rec := NewBatchRecorder(in.js, in.cfg)
	defer rec.Close()
	for id, outs := range skips {
		if err := rec.Record(ctx, id, outs...); err != nil && !errors.Is(err, ErrUnknownBatch) {
			return fmt.Errorf("bus: record the cancelled jobs of batch %s: %w", id, err)
		}
	}
	return nil
}

// recordWriter publishes records asynchronously, awaiting them in
// windows of a thousand.
type recordWriter struct {
	js      jetstream.JetStream
	futures []jetstream.PubAckFuture
	err     error
}

func (w *recordWriter) write(ctx context.Context, rec *JobStatus) {
	f, err := w.js.PublishMsgAsync(&nats.Msg{Subject: wire.StatusSubject(rec.Queue, rec.Kind, rec.ID), Data: rec.AppendJSON(nil)})
	if err != nil {
		w.err = cmpErr(w.err, err)
		return
	}
	w.futures = append(w.futures, f)
	if len(w.futures) >= 1000 {
		w.err = cmpErr(w.err, w.wait(ctx))
	}
}

func (w *recordWriter) wait(ctx context.Context) error {
	for _, f := range w.futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			w.err = cmpErr(w.err, err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	w.futures = w.futures[:0]
	if w.err != nil {
		return fmt.Errorf("bus: write cancelled records: %w", w.err)
	}
	return nil
}

func cmpErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}

// CancelTag cancels every unfinished job with tag (as Cancel does, without
// waiting for the workers' answers) and returns how many it cancelled.
// The jobs are those of the tag index: dispatched within
// Config.CompletedRetention, at most 100,000.
func (in *Inspector) CancelTag(ctx context.Context, tag string) (int, error) {
	if _, err := wire.ValidateTags([]string{tag}); err != nil {
		return 0, err
	}
	ids, err := in.tagIDs(ctx, tag, maxTagCancel)
	if err != nil {
		return 0, err
	}
	running, err := in.runningByID(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for start := 0; start < len(ids); start += 100 {
		sts, err := in.lookupMany(ctx, ids[start:min(start+100, len(ids))], running)
		if err != nil {
			return n, err
		}
		for _, st := range sts {
			if st == nil || st.State.Finished() {
				continue
			}
			if err := in.cancelJob(ctx, st, false); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// Clear deletes the jobs of queue from JOBS, as Laravel's queue:clear
// does, with one purge of jobs.<queue>.>, and returns how many it
// deleted: the ready ones and those delivered but not acknowledged (waiting
// for a retry's backoff under a minute, or whose worker died). A job
// running now is not cancelled: it finishes, but is not retried if it
// fails. Delayed jobs, and retries stored as delayed jobs for a longer
// backoff, are kept (CancelQueue removes them too). Nothing is recorded: the IDs of
// the deleted jobs are no longer known. The until-done unique keys the
// deleted jobs held are freed (freeClearedKeys), so their keys can be
// dispatched again at once rather than after their lease. A batch whose
// jobs are cleared never finishes: CancelQueue or CancelBatch end it.
func (in *Inspector) Clear(ctx context.Context, queue string) (uint64, error) {
	if err := in.knownQueue(ctx, queue); err != nil {
		return 0, err
	}
	n, err := purge(ctx, in.js, JobsStream, purgeRequest{Filter: wire.QueueFilter(queue)})
	if err != nil {
		return 0, fmt.Errorf("bus: clear queue %s: %w", queue, err)
	}
	if err := in.freeClearedKeys(ctx, queue); err != nil {
		return n, fmt.Errorf("bus: queue %s is cleared, but the unique keys of its jobs are held until their lease ends: %w", queue, err)
	}
	return n, nil
}
