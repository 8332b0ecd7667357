package workers

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/bus"
)

// Jobs of a batch (bus.Dispatcher.Batch, Chain): a job's outcome is
// recorded in its batch's state before the job is acknowledged (or, dead-
// lettered, terminated), so a worker killed in between leaves the job to
// be delivered again and recorded then. Recording is group-committed: the
// job goroutine hands the outcome to this process's batch log and moves
// on; the log records everything handed to it since its last write in one
// compare-and-set per chunk, then settles those jobs with the server. A
// job of a cancelled batch is skipped: recorded as skipped and acked,
// never run.

// batchLog records the outcomes of one worker process's batch jobs.
type batchLog struct {
	rec *bus.BatchRecorder
	log zerolog.Logger

	mu      sync.Mutex
	queue   []batchRecord
	pending sync.WaitGroup // records handed over and not yet written
	room    chan struct{}  // one token per record held: bounds the queue
	wake    chan struct{}
	stopped chan struct{}
	done    chan struct{}
}

// batchRecord is one outcome waiting to be written, and how to settle its
// delivery once it is.
type batchRecord struct {
	r       *run
	batch   string
	out     bus.BatchOutcome
	settle  func() error
	outcome string
}

func newBatchLog(js jetstream.JetStream, cfg bus.Config, log zerolog.Logger) *batchLog {
	b := &batchLog{
		rec: bus.NewBatchRecorder(js, cfg), log: log, room: make(chan struct{}, maxBatchRecords),
		wake: make(chan struct{}, 1), stopped: make(chan struct{}), done: make(chan struct{}),
	}
	go b.loop()
	return b
}

// stop waits (up to grace) for the outcomes handed over to be written and
// their jobs settled, then ends the log. Those it could not write are
// delivered again after AckWait.
func (b *batchLog) stop(grace time.Duration) {
	idle := make(chan struct{})
	go func() { b.pending.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-time.After(grace):
		b.log.Warn().Msg("batch outcomes not recorded before the drain ended; their jobs will be delivered again")
	}
	close(b.stopped)
	<-b.done
	b.rec.Close()
}

// maxBatchRecords bounds the outcomes waiting to be written: past it, a
// job goroutine waits for room, so a log that cannot write (NATS trouble)
// slows the worker down instead of holding ever more jobs.
const maxBatchRecords = 10_000

// add hands an outcome over to be written.
func (b *batchLog) add(rec batchRecord) {
	b.room <- struct{}{}
	b.pending.Add(1)
	b.mu.Lock()
	b.queue = append(b.queue, rec)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *batchLog) loop() {
	defer close(b.done)
	for {
		select {
		case <-b.stopped:
			return
		case <-b.wake:
		}
		b.mu.Lock()
		recs := b.queue
		b.queue = nil
		b.mu.Unlock()
		b.write(recs)
	}
}

// recordTries bounds the attempts at writing one group of outcomes; past
// them the group's jobs are left unsettled, to be delivered again.
const recordTries = 4

// write records recs, batch by batch, and settles each batch's jobs once
// its outcomes are stored.
func (b *batchLog) write(recs []batchRecord) {
	groups := map[string][]batchRecord{}
	var order []string
	for _, r := range recs {
		if groups[r.batch] == nil {
			order = append(order, r.batch)
		}
		groups[r.batch] = append(groups[r.batch], r)
	}
	for _, id := range order {
		group := groups[id]
		b.writeGroup(id, group)
		b.pending.Add(-len(group))
		for range group {
			<-b.room
		}
	}
}

// writeGroup records the outcomes of group, jobs of batch id, and settles
// them once recorded. A job whose Jetfleet-Batch-Index lies outside the
// batch (published raw: it is none of the batch's jobs) makes the write
// invalid: each job is then written alone, so that it alone is settled
// without a record and the others are recorded.
func (b *batchLog) writeGroup(id string, group []batchRecord) {
	outs := make([]bus.BatchOutcome, len(group))
	for i, r := range group {
		outs[i] = r.out
	}
	err := b.record(id, outs)
	if errors.Is(err, bus.ErrInvalid) && len(group) > 1 {
		for i := range group {
			b.writeGroup(id, group[i:i+1])
		}
		return
	}
	switch {
	case errors.Is(err, bus.ErrUnknownBatch):
		b.log.Warn().Err(err).Str("batch", id).Msg("the jobs' batch is unknown (expired, or never made); settled without recording")
	case errors.Is(err, bus.ErrInvalid):
		group[0].r.log.Error().Err(err).Str("batch", id).Msg("the job's batch headers do not match its batch; settled without recording")
	case err != nil:
		b.log.Error().Err(err).Str("batch", id).Int("jobs", len(group)).Msg("could not record batch outcomes; the jobs will be delivered again")
		return
	}
	for _, r := range group {
		r.r.finish(r.settle, r.outcome)
	}
}

// record writes outs, retrying a failure (a leader election) a few times.
func (b *batchLog) record(id string, outs []bus.BatchOutcome) error {
	wait := 100 * time.Millisecond
	var err error
	for range recordTries {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = b.rec.Record(ctx, id, outs...)
		cancel()
		if err == nil || errors.Is(err, bus.ErrUnknownBatch) || errors.Is(err, bus.ErrInvalid) {
			return err
		}
		time.Sleep(wait)
		wait *= 2
	}
	return err
}

// acked settles a job that succeeded: for a batch job, once its success
// is recorded; a unique job's key is freed once its ack is confirmed.
func (l *loop) acked(r *run, job *bus.Job) {
	ack := r.msg.Ack
	if job.Header.Get(bus.HeaderUnique) != "" {
		ack = func() error { return l.ackThenFree(r, job) }
	}
	if !l.toBatch(r, job, bus.BatchJobSucceeded, ack, "acked") {
		r.finish(ack, "acked")
	}
}

// terminated removes a dead-lettered job: for a batch job, once its
// failure is recorded.
func (l *loop) terminated(r *run, job *bus.Job) {
	term := func() error { return r.msg.TermWithReason("dead-lettered") }
	if !l.toBatch(r, job, bus.BatchJobFailed, term, "dead-lettered") {
		r.finish(term, "dead-lettered")
	}
}

// removeCancelled removes a cancelled job from JOBS: for a batch job, once
// it is recorded as skipped, so that its batch still finishes.
func (l *loop) removeCancelled(r *run, job *bus.Job) {
	term := func() error { return r.msg.TermWithReason("cancelled") }
	if !l.toBatch(r, job, bus.BatchJobSkipped, term, "cancelled") {
		r.finish(term, "cancelled")
	}
}

// toBatch hands a batch job's outcome to the batch log, which settles it
// once recorded; false for a job of no batch.
func (l *loop) toBatch(r *run, job *bus.Job, result bus.BatchResult, settle func() error, outcome string) bool {
	id, index, ok := bus.BatchOf(job.Header)
	if !ok {
		return false
	}
	out := bus.BatchOutcome{Index: index, Result: result, Token: job.Header.Get(bus.HeaderCausalToken)}
	l.batches.add(batchRecord{r: r, batch: id, out: out, settle: settle, outcome: outcome})
	return true
}

// recordSkipped writes the record of a job skipped because its batch
// is cancelled: cancelled, never run, so that its lookup says so.
func (l *loop) recordSkipped(job *bus.Job, batch string) {
	if !l.status.history {
		return
	}
	now := time.Now()
	st := bus.JobStatus{
		ID: job.ID, Queue: job.Queue, Kind: job.Kind, State: bus.JobCancelled, At: now, FinishedAt: now, Seq: job.Seq,
		EnqueuedAt: job.EnqueuedAt, Worker: l.status.worker, Tags: bus.ParseTags(job.Header), Headers: bus.RecordHeaders(job.Header),
		Body: job.Body, Note: "skipped without running: its batch " + batch + " is cancelled",
	}
	if len(job.Body) > bus.MaxRecordBody {
		st.Body, st.BodyBytes = nil, len(job.Body)
	}
	l.status.publish(&st)
}

// skipCancelled skips a job whose batch was cancelled: recorded as
// skipped and acked, never run. A batch whose state cannot be read is
// taken as running.
func (l *loop) skipCancelled(r *run, job *bus.Job) bool {
	id, index, ok := bus.BatchOf(job.Header)
	if !ok {
		return false
	}
	ctx, cancel := context.WithTimeout(l.jobCtx, 5*time.Second)
	defer cancel()
	cancelled, err := l.batches.rec.Cancelled(ctx, id)
	if err != nil {
		r.log.Warn().Err(err).Str("batch", id).Msg("cannot read the job's batch; running the job")
		return false
	}
	if !cancelled {
		return false
	}
	r.log.Info().Str("batch", id).Msg("job skipped: its batch is cancelled")
	l.recordSkipped(job, id)
	l.batches.add(batchRecord{r: r, batch: id, out: bus.BatchOutcome{Index: index, Result: bus.BatchJobSkipped}, settle: r.msg.Ack, outcome: "skipped"})
	return true
}
