package workers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/settle"
)

// releaseError is what Release returns.
type releaseError struct{ after time.Duration }

func (e *releaseError) Error() string { return fmt.Sprintf("released: to run again in %s", e.after) }

// Release, returned by a handler, puts the job back to run again after d
// (at once when d ≤ 0) without using a try, as Laravel's
// $this->release(30) and River's JobSnooze do, and unlike a failure: the
// attempt does not count against the job's tries. The job is stored again
// (bus.Release: JetStream's delivery count cannot be reset, so the new
// message carries the tries used so far in Jetfleet-Tries-Used and counts
// its releases in Jetfleet-Released) and the original is removed; its
// unique key, if any, stays held. job.Attempt goes on from the tries used;
// job.Released says how many times it was released.
func Release(d time.Duration) error { return &releaseError{after: max(d, 0)} }

// IsRelease reports whether err, or an error it wraps, came from Release.
func IsRelease(err error) bool {
	var r *releaseError
	return errors.As(err, &r)
}

// released settles an attempt whose handler returned Release.
func (l *loop) released(r *run, job *bus.Job, err error) {
	var re *releaseError
	errors.As(err, &re)
	r.log.Info().Dur("after", re.after).Int("released", job.Released+1).Msg("job released by its handler; this attempt uses no try")
	l.reschedule(r, job, re.after, "released by its handler")
}

// reschedule stores the job again to run after after, without using a
// try, renews its unique key's lease for the wait, and only then removes
// the original. If the new message cannot be stored, the original is
// handed back with a delay instead: that uses a try, but loses nothing.
func (l *loop) reschedule(r *run, job *bus.Job, after time.Duration, why string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.Release(ctx, l.w.js, job, after); err != nil {
		r.log.Error().Err(err).Str("why", why).Msg("could not release the job; handing it back (this uses a try)")
		r.finish(func() error { return r.msg.NakWithDelay(max(after, time.Second)) }, "retry")
		return
	}
	if err := bus.KeepUnique(ctx, l.w.js, job, after); err != nil {
		r.log.Warn().Err(err).Msg("could not renew the job's unique key")
	}
	r.log.Debug().Str("why", why).Dur("after", after).Msg("job released")
	r.finish(r.msg.Ack, "released")
}

// storeRetriesFrom is the shortest retry wait for which a failed job is
// stored again as a delayed job (bus.RetryLater) rather than handed back
// with a delay. A message handed back stays among its queue's
// unacknowledged jobs until it is delivered again: with long backoffs
// (minutes, hours) a wave of failures would fill the queue's
// MaxAckPending and stop its deliveries for the whole wait. Storing costs
// a publish; shorter waits keep the cheaper NAK.
const storeRetriesFrom = time.Minute

// retryAfter settles a failed attempt that will be tried again after
// delay: handed back with that delay when it is short, else stored again
// as a delayed job that counts the try, its unique key renewed for the
// wait, and only then removed. If it cannot be stored it is handed back.
func (l *loop) retryAfter(r *run, job *bus.Job, delay time.Duration) {
	if delay < l.w.storeRetriesFrom {
		r.finish(func() error { return r.msg.NakWithDelay(delay) }, "retry")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.RetryLater(ctx, l.w.js, job, delay); err != nil {
		r.log.Warn().Err(err).Msg("could not store the job for its retry; handing it back with the delay")
		r.finish(func() error { return r.msg.NakWithDelay(delay) }, "retry")
		return
	}
	if err := bus.KeepUnique(ctx, l.w.js, job, delay); err != nil {
		r.log.Warn().Err(err).Msg("could not renew the job's unique key")
	}
	r.finish(r.msg.Ack, "retry")
}

// deadLetterUnrun dead-letters a fetched job that can never run (its
// limit key is invalid) without running it.
func (l *loop) deadLetterUnrun(r *run, reason string) {
	job, err := bus.ParseJob(r.msg)
	if job == nil {
		r.log.Error().Err(err).Msg("message without JetStream metadata; terminating it")
		r.finish(r.msg.Term, "terminated")
		return
	}
	r.logJob(l.w.log, job)
	l.deadLetter(r, job, reason, 0)
}

// uniqueSeen renews the lease of the job's until-done unique key on each
// delivery, so that a job retried for a long time keeps it.
func (l *loop) uniqueSeen(r *run, job *bus.Job) {
	if job.Header.Get(bus.HeaderUnique) == "" {
		return
	}
	ctx, cancel := context.WithTimeout(l.jobCtx, 5*time.Second)
	defer cancel()
	if err := bus.KeepUnique(ctx, l.w.js, job, 0); err != nil {
		r.log.Warn().Err(err).Msg("could not renew the job's unique key")
	}
}

// uniqueDone frees the job's until-done unique key once the job is done:
// its success acknowledged (ackThenFree), its dead letter stored, or it
// was cancelled. It tries through a JetStream election of the bucket's
// leader, which takes seconds: a key left held would refuse the next job
// of the key until the lease ends.
func (l *loop) uniqueDone(r *run, job *bus.Job) {
	if job.Header.Get(bus.HeaderUnique) == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), uniqueSettleFor)
	defer cancel()
	err := settle.Retry(ctx, 5*time.Second, func(ctx context.Context) error {
		return bus.UnlockUnique(ctx, l.w.js, job)
	})
	if err != nil {
		r.log.Warn().Err(err).Msg("could not free the job's unique key; it is freed when its lease ends")
	}
}

// ackThenFree acknowledges a unique job that succeeded and, once the
// server confirmed the ack, frees its key. A key freed after an ack the
// server never got (its node died) would let a second job of the key in
// while this one is delivered again. An ack that cannot be confirmed
// leaves the key held: the job is delivered again after AckWait and
// settled then (redelivery.go), or the key's lease ends.
func (l *loop) ackThenFree(r *run, job *bus.Job) error {
	ctx, cancel := context.WithTimeout(context.Background(), uniqueSettleFor)
	defer cancel()
	err := settle.Retry(ctx, 5*time.Second, func(ctx context.Context) error {
		err := r.msg.DoubleAck(ctx)
		if err != nil && l.goneFromJobs(job) {
			return nil // acked after all: the answer was lost
		}
		return err
	})
	if err != nil {
		return err
	}
	debugAfterAckHook()
	l.uniqueDone(r, job)
	return nil
}

// goneFromJobs reports whether job is no longer stored in JOBS: acked (a
// work-queue stream drops what its consumer acked) or removed. It has
// time of its own: the ack it checks on may have used all of its own.
func (l *loop) goneFromJobs(job *bus.Job) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s, err := l.w.js.Stream(ctx, bus.JobsStream)
	if err != nil {
		return false
	}
	_, err = s.GetMsg(ctx, job.Seq)
	return errors.Is(err, jetstream.ErrMsgNotFound)
}

// uniqueSettleFor is how long a worker keeps trying to settle a unique
// job with the server (its ack confirmed, its key freed) while the answers
// are an election's (settle.Transient): longer than a JetStream election.
const uniqueSettleFor = 30 * time.Second
