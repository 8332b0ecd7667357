package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/bus"
)

// What a worker tells the rest of the fleet about its jobs (the job
// history of the wire contract). It keeps the jobs it runs in memory and
// answers for them over core NATS (bus.LocatePrefix, bus.RunningSubject),
// so a running job costs no write; it writes one record to
// bus.HistoryStream when a job succeeds, fails an attempt or is
// cancelled, with a plain publish that is not awaited (like an ack), and
// a running job's progress at most once per bus.ProgressInterval. Dead
// jobs need no record: their dead letter is one.

// ErrCancelled is the cause of a job's context when the job was cancelled
// (bus.Inspector.Cancel, `jetfleet queue cancel`): context.Cause(ctx)
// returns it. A handler that returns after it (with any error) ends the
// job as cancelled: not retried, not dead-lettered. A handler may also
// cancel its own job by returning an error that wraps ErrCancelled
// (River's JobCancel, Asynq's SkipRetry): it ends the same way, and its
// error is kept in the job's record.
var ErrCancelled = errors.New("job cancelled")

// ErrResultTooLarge is wrapped by SetResult when a result is larger than
// bus.MaxResult as JSON.
var ErrResultTooLarge = errors.New("job result too large")

// cancelMemory is how long a worker remembers a cancelled job ID, so that
// a job it fetched before the cancel and starts after it is refused.
const (
	cancelMemory    = 10 * time.Minute
	maxCancelMemory = 100_000
)

// tracker is one Run's registry of running jobs and cancels.
type tracker struct {
	nc      *nats.Conn
	history bool
	worker  string // host:pid
	log     zerolog.Logger

	mu        sync.Mutex
	running   map[string]*jobRun  // by the job ID's subject token
	cancelled map[string]struct{} // job ID tokens cancelled lately
	order     []cancelMark        // cancelled, oldest first
	cuts      map[string]queueCut // queue → cancelled up to a sequence
	subs      []*nats.Subscription
}

type cancelMark struct {
	token string
	at    time.Time
}

type queueCut struct {
	upTo uint64
	at   time.Time
}

func newTracker(nc *nats.Conn, history bool, log zerolog.Logger) *tracker {
	host, _ := os.Hostname()
	return &tracker{
		nc: nc, history: history, log: log, worker: fmt.Sprintf("%s:%d", host, os.Getpid()),
		running: map[string]*jobRun{}, cancelled: map[string]struct{}{}, cuts: map[string]queueCut{},
	}
}

// jobRun is one attempt of a job in this process.
type jobRun struct {
	t       *tracker
	job     *bus.Job
	token   string
	tries   int
	started time.Time
	cancel  context.CancelCauseFunc

	mu sync.Mutex
	// tags and headers are what each record of the attempt keeps of the
	// job's headers, read by the first record.
	tags      []string
	headers   map[string]string
	headersOK bool
	cancelled bool
	progress  *bus.Progress
	result    json.RawMessage
	lastWrite time.Time
	timer     *time.Timer
	ended     bool
}

type runKey struct{}

// begin registers the attempt about to start, for cancels and lookups, and
// returns its context: cancellable by a cancel, and carrying the run for
// Progress and SetResult. A job cancelled before it starts is marked so:
// the caller settles it without running it.
func (t *tracker) begin(ctx context.Context, job *bus.Job, tries int) (context.Context, *jobRun) {
	jr := &jobRun{t: t, job: job, token: bus.IDToken(job.ID), tries: tries, started: time.Now()}
	ctx, jr.cancel = context.WithCancelCause(ctx)
	ctx = context.WithValue(ctx, runKey{}, jr)
	t.mu.Lock()
	t.running[jr.token] = jr
	cancelled := t.cancelledLocked(job, jr.token)
	t.mu.Unlock()
	if cancelled {
		jr.cancelRun()
	}
	return ctx, jr
}

// cancelledBefore reports whether job was cancelled (by ID, or with its
// queue) while it waited in this worker, unstarted.
func (t *tracker) cancelledBefore(job *bus.Job) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cancelledLocked(job, bus.IDToken(job.ID))
}

// cancelledLocked is cancelledBefore for job, whose ID token is token;
// t.mu is held.
func (t *tracker) cancelledLocked(job *bus.Job, token string) bool {
	_, cancelled := t.cancelled[token]
	cut, cutOK := t.cuts[job.Queue]
	return cancelled || cutOK && job.Seq <= cut.upTo
}

// cancelAll ends the context of every running attempt with cause, without
// marking them cancelled: a drain whose grace ran out hands them back.
func (t *tracker) cancelAll(cause error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, jr := range t.running {
		jr.cancel(cause)
	}
}

// end forgets the attempt; no progress is written after it.
func (t *tracker) end(jr *jobRun) {
	t.mu.Lock()
	if t.running[jr.token] == jr {
		delete(t.running, jr.token)
	}
	t.mu.Unlock()
	jr.stopProgress()
	jr.cancel(nil)
}

// stopProgress ends the progress writes: none is written after it, so
// none can follow the final record.
func (jr *jobRun) stopProgress() {
	jr.mu.Lock()
	jr.ended = true
	if jr.timer != nil {
		jr.timer.Stop()
	}
	jr.mu.Unlock()
}

// wasCancelled reports whether the attempt was cancelled.
func (jr *jobRun) wasCancelled() bool {
	jr.mu.Lock()
	defer jr.mu.Unlock()
	return jr.cancelled
}

// cancelRun cancels a running attempt; false when it had been already.
func (jr *jobRun) cancelRun() bool {
	jr.mu.Lock()
	was := jr.cancelled
	jr.cancelled = true
	jr.mu.Unlock()
	jr.cancel(ErrCancelled)
	return !was
}

// record is the attempt's record in state, with what the worker knows.
func (jr *jobRun) record(state bus.JobState, now time.Time) *bus.JobStatus {
	st := new(bus.JobStatus)
	jr.mu.Lock()
	defer jr.mu.Unlock()
	jr.fillLocked(st, state, now)
	return st
}

// recordLocked is record with jr.mu held.
func (jr *jobRun) recordLocked(state bus.JobState, now time.Time) *bus.JobStatus {
	st := new(bus.JobStatus)
	jr.fillLocked(st, state, now)
	return st
}

// fillLocked makes st the attempt's record in state at now, with jr.mu
// held. The final record's st lives on its caller's stack: an allocation
// less per job.
func (jr *jobRun) fillLocked(st *bus.JobStatus, state bus.JobState, now time.Time) {
	j := jr.job
	if !jr.headersOK {
		jr.tags, jr.headers, jr.headersOK = bus.ParseTags(j.Header), bus.RecordHeaders(j.Header), true
	}
	*st = bus.JobStatus{
		ID: j.ID, Queue: j.Queue, Kind: j.Kind, State: state, At: now, Seq: j.Seq,
		Attempt: j.Attempt, Tries: jr.tries, EnqueuedAt: j.EnqueuedAt, StartedAt: jr.started,
		Worker: jr.t.worker, Tags: jr.tags, Headers: jr.headers, Body: j.Body,
	}
	if len(j.Body) > bus.MaxRecordBody {
		st.Body, st.BodyBytes = nil, len(j.Body)
	}
	if jr.progress != nil {
		p := *jr.progress
		st.Progress = &p
	}
	st.Result = jr.result
}

// finished writes the attempt's final record: succeeded, retrying (with
// the next attempt's time) or cancelled.
func (jr *jobRun) finished(state bus.JobState, took time.Duration, err error, retryIn time.Duration) {
	jr.stopProgress()
	if !jr.t.history {
		return
	}
	now := time.Now()
	var st bus.JobStatus
	jr.mu.Lock()
	jr.fillLocked(&st, state, now)
	jr.mu.Unlock()
	st.FinishedAt, st.RunTime = now, took
	if err != nil {
		st.Error = errorText(err)
	}
	if state == bus.JobRetrying {
		st.NextAttemptAt = now.Add(retryIn)
	}
	jr.t.publish(&st)
}

// maxRecordError bounds the error text of a record.
const maxRecordError = 4 << 10

// errorText is err's text, cut to maxRecordError bytes with the marker
// included, on a UTF-8 character boundary.
func errorText(err error) string {
	const marker = " …[truncated]"
	s := err.Error()
	if len(s) <= maxRecordError {
		return s
	}
	return cutAt(s, maxRecordError-len(marker)) + marker
}

func (t *tracker) publish(st *bus.JobStatus) {
	if err := bus.PublishStatus(t.nc, st); err != nil {
		t.log.Debug().Err(err).Str("job_id", st.ID).Msg("job record not written")
	}
}

// setProgress keeps the latest progress and writes it at most once per
// bus.ProgressInterval: at once when the last write is that old, else
// when the interval is over (one timer at a time).
func (jr *jobRun) setProgress(done float64, message string) error {
	if math.IsNaN(done) || done < 0 || done > 1 {
		return fmt.Errorf("workers: progress %v is not between 0 and 1", done)
	}
	message = cutMessage(message)
	now := time.Now()
	jr.mu.Lock()
	jr.progress = &bus.Progress{Done: done, Message: message, At: now.UTC()}
	if jr.ended || !jr.t.history {
		jr.mu.Unlock()
		return nil
	}
	if wait := jr.lastWrite.Add(bus.ProgressInterval).Sub(now); wait > 0 {
		if jr.timer == nil {
			jr.timer = time.AfterFunc(wait, jr.flushProgress)
		}
		jr.mu.Unlock()
		return nil
	}
	if jr.timer != nil { // a timer late to fire (a loaded machine): this write replaces it
		jr.timer.Stop()
		jr.timer = nil
	}
	jr.lastWrite = now
	jr.t.publish(jr.recordLocked(bus.JobRunning, now)) // under jr.mu: never after the final record
	jr.mu.Unlock()
	return nil
}

func (jr *jobRun) flushProgress() {
	now := time.Now()
	jr.mu.Lock()
	jr.timer = nil
	// A timer that fired while setProgress wrote (Stop came too late) finds
	// a recent write of the latest progress: nothing left to write.
	if jr.ended || now.Sub(jr.lastWrite) < bus.ProgressInterval {
		jr.mu.Unlock()
		return
	}
	jr.lastWrite = now
	jr.t.publish(jr.recordLocked(bus.JobRunning, now)) // under jr.mu: never after the final record
	jr.mu.Unlock()
}

func cutMessage(s string) string {
	if len(s) <= bus.MaxProgressMessage {
		return s
	}
	return cutAt(s, bus.MaxProgressMessage)
}

// cutAt is s cut to at most n < len(s) bytes without splitting a UTF-8
// character.
func cutAt(s string, n int) string {
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

func (jr *jobRun) setResult(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("workers: result of job %s does not encode as JSON: %w", jr.job.ID, err)
	}
	if len(b) > bus.MaxResult {
		return fmt.Errorf("%w: the result of job %s is %d bytes as JSON; the limit is %d (keep larger output elsewhere and store its key)", ErrResultTooLarge, jr.job.ID, len(b), bus.MaxResult)
	}
	jr.mu.Lock()
	jr.result = b
	jr.mu.Unlock()
	return nil
}

func runFrom(ctx context.Context) *jobRun {
	jr, _ := ctx.Value(runKey{}).(*jobRun)
	return jr
}

// Progress reports how far the job of ctx (a handler's context) is: done
// from 0 to 1 and what it is doing. The latest report is what `jetfleet
// queue job`, Inspector.Job and the dashboard show while the job runs; it
// is written to bus.HistoryStream at most once per bus.ProgressInterval
// (one second), so a handler may call it as often as it likes. The
// message is cut to bus.MaxProgressMessage bytes. It returns an error only
// for a done outside 0..1, or a context that is not a job's. ctx is not
// waited on: nothing Progress does blocks.
func Progress(ctx context.Context, done float64, message string) error {
	jr := runFrom(ctx)
	if jr == nil {
		return errors.New("workers: Progress needs the context of a running job")
	}
	return jr.setProgress(done, message)
}

// SetResult stores v, as JSON, as the result of the job of ctx (a
// handler's context): `jetfleet queue job` and Inspector.Job show it until
// the history's retention ends. It is written with the job's final
// record; calling it again replaces it. A result larger than
// bus.MaxResult (64 KiB) is an error wrapping ErrResultTooLarge, and is
// not kept.
func SetResult(ctx context.Context, v any) error {
	jr := runFrom(ctx)
	if jr == nil {
		return errors.New("workers: SetResult needs the context of a running job")
	}
	return jr.setResult(v)
}

// Progress reports how far the job is; see the package's Progress.
func (j *Job[T]) Progress(ctx context.Context, done float64, message string) error {
	if j.run != nil {
		return j.run.setProgress(done, message)
	}
	return Progress(ctx, done, message)
}

// SetResult stores v as the job's result; see the package's SetResult.
func (j *Job[T]) SetResult(v any) error {
	if j.run == nil {
		return errors.New("workers: SetResult needs a job given to a handler by a worker")
	}
	return j.run.setResult(v)
}
