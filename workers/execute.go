package workers

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/bus"
)

// run is one job delivery in this process, from fetch to its final ack,
// nak or dead letter. finish settles it exactly once, whether the handler
// returns or the drain hands it back first.
type run struct {
	msg      jetstream.Msg
	once     sync.Once
	slotOnce sync.Once
	busy     atomic.Bool // the handler is running: heartbeats keep it owned
	queued   atomic.Bool // fetched, waiting for a slot: heartbeats keep it owned too
	log      zerolog.Logger
	fields   jobFields // what log adds to each line about the job (logJob)
	// settled, when set, is told each outcome settled with the server.
	settled func(outcome string)
	trace   attemptSpan // the attempt's span (tracing.go)
	// lim is the limits a job takes once it has a run slot; adm holds
	// the slots it runs under; limitFail says why its limit key is
	// invalid (limits.go).
	lim       *waiter
	adm       *admission
	limitFail string
}

func (r *run) finish(settle func() error, outcome string) {
	r.once.Do(func() {
		err := settle()
		r.trace.end(outcome, err)
		if err != nil {
			r.log.Error().Err(err).Str("outcome", outcome).Msg("could not settle job with the server; it will be delivered again after AckWait")
			return
		}
		if r.settled != nil {
			r.settled(outcome)
		}
	})
}

// start queues a fetched job for the job goroutines. It runs when a slot
// is free: at once, or after the jobs fetched before it.
func (l *loop) start(m jetstream.Msg) {
	if l.heldAlready(m) { // redelivery.go
		return
	}
	r := &run{msg: m, log: l.w.log, settled: l.settled(m.Subject())}
	r.queued.Store(true)
	l.held.Add(1)
	l.mu.Lock()
	l.inFlight[r] = struct{}{}
	l.mu.Unlock()
	l.running.Add(1)
	if l.limits.wait(r) { // a fleet-wide limit has no room now: it waits (limits.go)
		return
	}
	l.work <- r
}

// runJobs is one of the loop's long-lived job goroutines. Reusing them
// keeps their grown stacks: a goroutine per job paid for stack growth
// (JSON decoding is deep) on every job.
func (l *loop) runJobs() {
	for r := range l.work {
		l.slots <- struct{}{}
		if !l.limits.admitNow(r) { // a fleet-wide limit has no room after all: it waits (limits.go)
			continue
		}
		r.queued.Store(false)
		l.process(r)
		l.release(r)
	}
}

// freeSlot gives r's slot to the next job as soon as its handler is done,
// before the outcome is settled with the server.
// The job counts as done for MaxJobs from then on: done and held change
// together, so the fetch loop never sees the job in neither.
func (l *loop) freeSlot(r *run) {
	r.slotOnce.Do(func() {
		<-l.slots
		l.mu.Lock()
		l.done++
		l.held.Add(-1)
		l.mu.Unlock()
		l.limits.done(r) // its limits' slots go back (limits.go)
		select {
		case l.finished <- struct{}{}:
		default:
		}
	})
}

func (l *loop) release(r *run) {
	l.freeSlot(r)
	l.mu.Lock()
	delete(l.inFlight, r)
	l.mu.Unlock()
	l.running.Done()
}

// process decides what a delivery needs: dead-lettering unrun when it can
// never run or has used its tries, otherwise running the handler.
func (l *loop) process(r *run) {
	job, err := bus.ParseJob(r.msg)
	if job == nil {
		r.log.Error().Err(err).Msg("message without JetStream metadata; terminating it")
		r.finish(r.msg.Term, "terminated")
		return
	}
	r.logJob(l.w.log, job)
	l.traceAttempt(r, job)
	if job.Attempt > 1 && l.settledBefore(r, job) {
		return
	}
	if reason, attempts, ok := bus.PendingFailure(job.Header); ok { // stored again while DLQ was full
		l.deadLetter(r, job, reason, attempts)
		return
	}
	if err != nil {
		l.deadLetter(r, job, fmt.Sprintf("malformed job: %v", err), 0)
		return
	}
	h := l.w.handlers[job.Kind]
	if h == nil {
		l.deadLetter(r, job, fmt.Sprintf("no handler for kind %q on queue %s (this worker handles: %s)", job.Kind, job.Queue, strings.Join(l.w.Kinds(), ", ")), 0)
		return
	}
	tries := firstPositive(job.Tries, h.tries, l.w.cfg.Tries)
	if job.Attempt > tries {
		l.deadLetter(r, job, noTryLeft(r, job, tries), tries)
		return
	}
	if l.skipCancelled(r, job) { // batch.go
		return
	}
	l.uniqueSeen(r, job) // renews its unique key's lease (release.go)
	l.execute(r, job, h, tries)
}

// noTryLeft says why a job whose attempt is over its tries is
// dead-lettered unrun: it came with Jetfleet-Tries-Used at its tries
// already, or (the usual case) its last attempt was interrupted.
func noTryLeft(r *run, job *bus.Job, tries int) string {
	if md, err := r.msg.Metadata(); err == nil {
		if used := job.Attempt - int(md.NumDelivered); used >= tries {
			return fmt.Sprintf("no try left: it came with %s %d and tries %d", bus.HeaderTriesUsed, used, tries)
		}
	}
	return fmt.Sprintf("interrupted during its last attempt: delivered %d times with tries %d; the worker running it stopped or died before it finished", job.Attempt, tries)
}

func firstPositive[T int | time.Duration](vs ...T) T {
	for _, v := range vs {
		if v > 0 {
			return v
		}
	}
	return 0
}

// execute runs the handler under the job's timeout, with heartbeats that
// keep the job owned past AckWait, and settles the outcome.
func (l *loop) execute(r *run, job *bus.Job, h *handler, tries int) {
	timeout := firstPositive(job.Timeout, h.timeout, l.w.cfg.Timeout)
	ctx, cancel := context.WithTimeout(r.trace.context(l.jobBase), timeout)
	defer cancel()
	ctx, jr := l.status.begin(ctx, job, tries) // cancels and lookups reach the job (status.go)
	defer l.status.end(jr)
	if err := l.jobCtx.Err(); err != nil { // the grace ran out before it started (cancelJobs)
		jr.cancel(err)
	}
	if jr.wasCancelled() {
		l.freeSlot(r)
		l.cancelled(r, jr, 0, nil)
		return
	}
	began := time.Now()
	r.log.Debug().Msg("job started")
	r.busy.Store(true)
	err := l.invoke(ctx, h, job)
	r.busy.Store(false)
	r.trace.failed(err)
	took := time.Since(began)
	l.pace.observe(took)
	l.freeSlot(r)
	if err != nil && timedOut(ctx) {
		err = fmt.Errorf("job timed out after %s: %w", timeout, err)
	}
	switch {
	case err == nil:
		r.log.Info().Dur("took", took).Msg("job succeeded")
		l.acked(r, job) // batch.go: a batch job is acked once its success is recorded, a unique job's key freed once its ack is confirmed
		jr.finished(bus.JobSucceeded, took, nil, 0)
	case jr.wasCancelled() || errors.Is(err, ErrCancelled):
		l.cancelled(r, jr, took, err)
	case IsRelease(err):
		l.released(r, job, err) // runs again later, using no try (release.go)
	case l.jobCtx.Err() != nil:
		r.log.Warn().Err(err).Dur("took", took).Msg("job interrupted by shutdown; handed back")
		r.finish(r.msg.Nak, "handed back")
	case IsPermanent(err) || job.Attempt >= tries:
		l.deadLetter(r, job, err.Error(), job.Attempt)
	default:
		delay := retryDelay(firstNonEmpty(job.Backoff, h.backoff, l.w.cfg.Backoff), job.Attempt)
		r.log.Warn().Err(err).Dur("took", took).Dur("retry_in", delay).Int("tries", tries).Msg("job failed; will retry")
		l.retryAfter(r, job, delay)
		jr.finished(bus.JobRetrying, took, err, delay)
	}
}

// timedOut reports whether ctx's deadline has passed. A handler can fail
// of it (a connection's read deadline, set from ctx) a moment before the
// context's own timer marks it done.
func timedOut(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return errors.Is(ctx.Err(), context.DeadlineExceeded) || ok && !time.Now().Before(d)
}

// cancelled ends a cancelled job: removed from JOBS (Term), not retried,
// not dead-lettered, recorded as cancelled (as skipped in its batch).
func (l *loop) cancelled(r *run, jr *jobRun, took time.Duration, err error) {
	r.log.Info().Dur("took", took).AnErr("handler_error", err).Msg("job cancelled")
	l.removeCancelled(r, jr.job)
	jr.finished(bus.JobCancelled, took, err, 0)
	l.uniqueDone(r, jr.job) // a cancelled job frees its unique key (release.go)
}

func firstNonEmpty(lists ...[]time.Duration) []time.Duration {
	for _, l := range lists {
		if len(l) > 0 {
			return l
		}
	}
	return nil
}

// invoke calls the handler through the middleware, turning a panic into a
// failed attempt whose reason holds the stack.
func (l *loop) invoke(ctx context.Context, h *handler, job *bus.Job) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return h.wrapped(ctx, job)
}

// wrapMiddleware gives each handler its run wrapped in the middleware,
// once per Run rather than once per job.
func (w *Worker) wrapMiddleware() {
	for _, h := range w.handlers {
		next := h.run
		for i := len(w.cfg.Middleware) - 1; i >= 0; i-- {
			next = w.cfg.Middleware[i](next)
		}
		h.wrapped = next
	}
}

// heartbeats tells the server, every third of AckWait, that each running
// job is still in progress, so a long job is not delivered to another
// worker while it runs. One goroutine serves every job of the loop.
func (l *loop) heartbeats(ctx context.Context) {
	every := l.ackWait / 3
	if every <= 0 {
		every = 10 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.beat()
		}
	}
}

func (l *loop) beat() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for r := range l.inFlight {
		if !r.busy.Load() && !r.queued.Load() {
			continue
		}
		if err := r.msg.InProgress(); err != nil {
			r.log.Warn().Err(err).Msg("heartbeat failed")
		}
	}
}

// deadLetter stores the job in DLQ, waits for the server's ack, runs the
// dead-letter hooks, and only then removes the original (Term). If storing
// fails, the job is left to be delivered again, so it is never lost.
func (l *loop) deadLetter(r *run, job *bus.Job, reason string, attempts int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := bus.DeadLetter(ctx, l.w.js, job, bus.Failure{Reason: reason, Attempts: attempts})
	if errors.Is(err, bus.ErrFailedFull) {
		// Every job that fails for good would come back every few seconds
		// to be refused again: it waits as a retry would, stored again
		// with its reason, so that it is dead-lettered, not run, next.
		delay := max(deadLetterRetry, retryDelay(l.backoffFor(job), job.Attempt))
		r.log.Error().Err(err).Dur("retry_in", delay).Msg("could not dead-letter job; it is stored again to be dead-lettered later, unrun")
		bus.SetPendingFailure(job.Header, reason, attempts)
		l.reschedule(r, job, delay, "DLQ is full")
		return
	}
	if err != nil {
		r.log.Error().Err(err).Dur("retry_in", deadLetterRetry).Msg("could not dead-letter job; it will be delivered again")
		r.finish(func() error { return r.msg.NakWithDelay(deadLetterRetry) }, "dead-letter failed")
		return
	}
	r.log.Error().Str("reason", firstLine(reason)).Int("attempts", attempts).Msg("job dead-lettered")
	l.settleDeadLetter(r, job, reason)
}

// deadLetterRetry is how soon a job whose dead letter could not be stored
// is delivered again to try once more.
const deadLetterRetry = 5 * time.Second

// settleDeadLetter runs the dead-letter hooks of a job whose letter DLQ
// holds, then removes the original. A hook's failure hands the job back
// instead, after its backoff: its next delivery runs the hooks again
// (resumeDeadLetter).
func (l *loop) settleDeadLetter(r *run, job *bus.Job, reason string) {
	if err := l.runDeadHooks(r, job, reason); err != nil {
		delay := retryDelay(l.backoffFor(job), job.Attempt)
		r.log.Error().Err(err).Dur("retry_in", delay).Msg("dead-letter hook failed; the job will be delivered again to run it")
		r.finish(func() error { return r.msg.NakWithDelay(delay) }, "dead-letter hook failed")
		return
	}
	l.terminated(r, job) // batch.go: a batch job is terminated once its failure is recorded
	l.uniqueDone(r, job) // frees its unique key (release.go)
}

// runDeadHooks runs the kind's dead-letter hook, then the worker's, with
// heartbeats, under the job's timeout or a minute, whichever is longer (a
// job that timed out must not leave its hooks no time); a panic is an
// error.
func (l *loop) runDeadHooks(r *run, job *bus.Job, reason string) (err error) {
	var hooks []deadHook
	h := l.w.handlers[job.Kind]
	if h != nil && h.dead != nil {
		hooks = append(hooks, h.dead)
	}
	if l.w.cfg.OnDeadLetter != nil {
		hooks = append(hooks, l.w.cfg.OnDeadLetter)
	}
	if len(hooks) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(l.jobCtx, max(l.timeoutFor(job), minHookTimeout))
	defer cancel()
	r.busy.Store(true)
	defer r.busy.Store(false)
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	for _, hook := range hooks {
		if err := hook(ctx, job, reason); err != nil {
			return fmt.Errorf("dead-letter hook: %w", err)
		}
	}
	return nil
}

// minHookTimeout is the least time dead-letter hooks get.
const minHookTimeout = time.Minute

// resumeDeadLetter finishes a redelivered job whose dead letter DLQ holds
// already (a hook failed, or the worker died between storing the letter
// and removing the original): it runs the hooks again with the stored
// reason instead of the handler. The letter is found by the job's ID and
// must come from this very message (its origin is the job's JOBS
// sequence): a retried dead letter is a new message and runs. It reports
// whether it settled the job.
func (l *loop) resumeDeadLetter(r *run, job *bus.Job) bool {
	ctx, cancel := context.WithTimeout(l.jobCtx, 10*time.Second)
	fj, err := l.dlq.FailedJob(ctx, job.ID)
	cancel()
	switch {
	case errors.Is(err, bus.ErrUnknownJob), errors.Is(err, bus.ErrInvalid):
		return false
	case err != nil:
		r.log.Warn().Err(err).Msg("cannot tell whether the job is dead-lettered already; it will be delivered again")
		r.finish(func() error { return r.msg.NakWithDelay(5 * time.Second) }, "dead-letter lookup failed")
		return true
	case fj.Origin != bus.JobsStream+":"+strconv.FormatUint(job.Seq, 10):
		return false
	}
	r.log.Warn().Str("reason", firstLine(fj.Error)).Msg("job is dead-lettered already; running its dead-letter hooks again")
	l.settleDeadLetter(r, job, fj.Error)
	return true
}

// timeoutFor is the job's timeout: its own, its kind's, the worker's.
func (l *loop) timeoutFor(job *bus.Job) time.Duration {
	var kind time.Duration
	if h := l.w.handlers[job.Kind]; h != nil {
		kind = h.timeout
	}
	return firstPositive(job.Timeout, kind, l.w.cfg.Timeout)
}

// backoffFor is the job's retry delays: its own, its kind's, the worker's.
func (l *loop) backoffFor(job *bus.Job) []time.Duration {
	var kind []time.Duration
	if h := l.w.handlers[job.Kind]; h != nil {
		kind = h.backoff
	}
	return firstNonEmpty(job.Backoff, kind, l.w.cfg.Backoff)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
