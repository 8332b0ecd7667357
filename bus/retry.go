package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// dlqOnlyHeaders describe a failure; a retried job does not carry them.
var dlqOnlyHeaders = []string{HeaderError, HeaderAttempts, HeaderFailedAt, HeaderOrigin, HeaderBodyOmitted, HeaderHeadersOmitted, HeaderPendingFailure}

// Retry puts the failed jobs with ids back on their queues and returns how
// many it retried. Each gets its original body and headers (less the
// failure headers), Jetfleet-Job-Id = its ID and a new dedupe ID,
// Nats-Msg-Id = "<id>:retry:<DLQ sequence>" (the same on every retry of
// that dead letter), so it starts again from attempt 1. Only after
// JetStream has acknowledged the job is the dead letter removed: a retry
// interrupted in between leaves the dead letter in DLQ, and retrying it
// again within the duplicate window (default 2 minutes) stores nothing new
// and removes it.
// IDs it could not retry (unknown: ErrUnknownJob; of a batch cancelled
// since: ErrBatchCancelled, as a worker would skip it; of a job whose
// subject broke the naming rule: ErrUnknownQueue, as no worker would be
// handed it) are reported together in the error; the others are still
// retried. A queue with no consumer (removed since) gets it back.
func (in *Inspector) Retry(ctx context.Context, ids ...string) (int, error) {
	known, err := in.queueSet(ctx)
	if err != nil {
		return 0, err
	}
	return in.eachFailed(ctx, ids, func(fj *FailedJob) error { return in.retryOne(ctx, fj, known) })
}

// eachFailed looks up the dead letter of each ID and applies act to it. It
// returns how many succeeded and the errors of the others, joined; it stops
// early only when ctx ends.
func (in *Inspector) eachFailed(ctx context.Context, ids []string, act func(*FailedJob) error) (int, error) {
	s, err := in.stream(ctx, DLQStream)
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	for _, id := range ids {
		fj, err := lastFailed(ctx, s, id)
		if err == nil {
			err = act(fj)
		}
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// RetryAll retries every failed job f selects (Limit is ignored), oldest
// first, as Retry does, and returns how many it retried. Jobs that fail
// again while it runs are not retried a second time: it stops at DLQ's
// last sequence as it was when it began. Dead letters Retry would refuse
// (of batches cancelled since, of jobs whose subject broke the naming
// rule) stay, and are named in the error returned with the count of the
// others.
func (in *Inspector) RetryAll(ctx context.Context, f FailedFilter) (int, error) {
	filter, err := f.subject()
	if err != nil {
		return 0, err
	}
	s, low, last, err := in.dlqRange(ctx, f.Since)
	if err != nil || low == 0 {
		return 0, err
	}
	known, err := in.queueSet(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	var refused []error
	err = scanDLQ(ctx, s, filter, low, last, func(fj *FailedJob) error {
		err := in.retryOne(ctx, fj, known)
		switch {
		case errors.Is(err, ErrBatchCancelled), errors.Is(err, ErrUnknownQueue):
			refused = append(refused, err)
			return nil
		case err != nil:
			return err
		}
		n++
		return nil
	})
	if err == nil && len(refused) > 0 {
		err = notRetried(refused)
	}
	return n, err
}

// notRetried says which dead letters a retry of all left, and why: the
// first ten reasons, and how many more.
func notRetried(refused []error) error {
	shown := refused[:min(len(refused), 10)]
	err := fmt.Errorf("bus: %d failed job(s) not retried (their dead letters stay): %w", len(refused), errors.Join(shown...))
	if more := len(refused) - len(shown); more > 0 {
		err = fmt.Errorf("%w\n… and %d more", err, more)
	}
	return err
}

// retryOne republishes fj (on jobs.<queue>.<kind>.<id>, so that the waiting
// job is found by ID), waits for the PubAck, then removes fj (and any
// older dead letter of the same job ID on the same subject) from DLQ.
func (in *Inspector) retryOne(ctx context.Context, fj *FailedJob, known map[string]bool) error {
	if err := in.deliverable(ctx, fj, known); err != nil {
		return err
	}
	if err := in.batchCancelled(ctx, fj); err != nil {
		return err
	}
	if n := fj.Header.Get(HeaderBodyOmitted); n != "" {
		return fmt.Errorf("%w: retry %q: its dead letter kept no body (%s bytes, too large beside the letter's headers); dispatch the job again from where it came from", ErrInvalid, fj.ID, n)
	}
	if hs := fj.Header.Get(HeaderHeadersOmitted); hs != "" {
		return fmt.Errorf("%w: retry %q: its dead letter did not keep the headers %s (too large beside the letter's own); dispatch the job again from where it came from", ErrInvalid, fj.ID, hs)
	}
	if err := wire.ValidateName("queue", fj.Queue); err != nil {
		return fmt.Errorf("bus: retry %q: dead letter %s has no valid queue: %w", fj.ID, fj.Subject, err)
	}
	if err := wire.ValidateName("kind", fj.Kind); err != nil {
		return fmt.Errorf("bus: retry %q: dead letter %s has no valid kind: %w", fj.ID, fj.Subject, err)
	}
	if _, err := in.js.PublishMsg(ctx, retryMsg(fj)); err != nil {
		return fmt.Errorf("%w: retry %q on %s: %w", ErrNotAcknowledged, fj.ID, wire.JobSubject(fj.Queue, fj.Kind), err)
	}
	if in.afterRepublish != nil {
		if err := in.afterRepublish(fj); err != nil {
			return err
		}
	}
	if _, err := purge(ctx, in.js, DLQStream, purgeRequest{Filter: fj.Subject, Seq: fj.Seq + 1}); err != nil {
		return fmt.Errorf("bus: retry %q: the job is queued again but its dead letter %s:%d stays (retry it again to remove it): %w", fj.ID, DLQStream, fj.Seq, err)
	}
	return nil
}

// queueSet is the queues that have a consumer.
func (in *Inspector) queueSet(ctx context.Context) (map[string]bool, error) {
	queues, err := in.Queues(ctx)
	if err != nil {
		return nil, err
	}
	known := make(map[string]bool, len(queues))
	for _, q := range queues {
		known[q] = true
	}
	return known, nil
}

// deliverable makes sure a worker can be handed fj once it is retried:
// its queue gets its consumer when it has none (as a dispatch to a new
// queue does), and known learns it. It refuses (an error wrapping
// ErrUnknownQueue) a dead letter on the queue "unknown" that no consumer
// serves: jobs published on a subject that broke the naming rule are
// dead-lettered there, and a retry would put the job where no worker is
// ever handed it, uncounted, instead of in DLQ.
func (in *Inspector) deliverable(ctx context.Context, fj *FailedJob, known map[string]bool) error {
	switch {
	case known[fj.Queue]:
		return nil
	case fj.Queue == "unknown":
		return fmt.Errorf("bus: retry %q: %w: its dead letter names no valid queue (the subject it was published on broke the naming rule, so it never ran): a retry could never be delivered; mend its producer, then forget it", fj.ID, ErrUnknownQueue)
	}
	if err := EnsureQueues(ctx, in.js, in.cfg, fj.Queue); err != nil {
		return fmt.Errorf("bus: retry %q: make its queue %s: %w", fj.ID, fj.Queue, err)
	}
	known[fj.Queue] = true
	return nil
}

// batchCancelled refuses the retry of a dead letter whose batch has been
// cancelled since (an error wrapping ErrBatchCancelled): a worker skips
// such a job without running it, so the retry would only delete the dead
// letter.
func (in *Inspector) batchCancelled(ctx context.Context, fj *FailedJob) error {
	id, _, ok := BatchOf(fj.Header)
	if !ok {
		return nil
	}
	st := &batchStore{js: in.js, cfg: in.cfg}
	sum, _, err := st.sum(ctx, id)
	switch {
	case errors.Is(err, ErrUnknownBatch):
		return nil
	case err != nil:
		return fmt.Errorf("bus: retry %q: read its batch %s: %w", fj.ID, id, err)
	case sum.Cancelled:
		return fmt.Errorf("bus: retry %q: %w (batch %s): a worker would skip the job without running it, so its dead letter stays (forget it to remove it)", fj.ID, ErrBatchCancelled, id)
	}
	return nil
}

// retryMsg is the job a retry of fj publishes.
func retryMsg(fj *FailedJob) *nats.Msg {
	h := nats.Header{}
	for k, vs := range fj.Header {
		if strings.HasPrefix(k, "Nats-") || isDLQOnly(k) {
			continue
		}
		h[k] = append([]string(nil), vs...)
	}
	h.Set(HeaderJobID, fj.ID)
	h.Set(HeaderMsgID, wire.RetryMsgID(fj.ID, fj.Seq))
	return &nats.Msg{Subject: wire.JobIDSubject(fj.Queue, fj.Kind, fj.ID), Header: h, Data: fj.Body}
}

func isDLQOnly(k string) bool {
	for _, h := range dlqOnlyHeaders {
		if k == h {
			return true
		}
	}
	return false
}

// Forget deletes the failed jobs with ids from DLQ without running them
// and returns how many it deleted. Unknown IDs are reported together in
// the error (wrapping ErrUnknownJob); the others are still deleted.
func (in *Inspector) Forget(ctx context.Context, ids ...string) (int, error) {
	return in.eachFailed(ctx, ids, func(fj *FailedJob) error {
		_, err := purge(ctx, in.js, DLQStream, purgeRequest{Filter: fj.Subject, Seq: fj.Seq + 1})
		return err
	})
}

// Flush deletes failed jobs and returns how many it deleted: those of
// queue ("" for every queue) dead-lettered more than olderThan ago (0 for
// all of them). It is one purge of DLQ: the sequence where the kept ones
// begin is found by time with one request, whatever DLQ holds. DLQ's
// MaxAge (Config.FailedRetention) already drops dead letters older than the
// retention on its own; Flush is for clearing them sooner.
func (in *Inspector) Flush(ctx context.Context, olderThan time.Duration, queue string) (uint64, error) {
	filter, err := FailedFilter{Queue: queue}.subject()
	if err != nil {
		return 0, err
	}
	if _, err := in.stream(ctx, DLQStream); err != nil {
		return 0, err
	}
	req := purgeRequest{Filter: filter}
	if olderThan > 0 {
		keepFrom, err := seqAtTime(ctx, in.js, DLQStream, time.Now().Add(-olderThan))
		if err != nil {
			return 0, err
		}
		// keepFrom 0: nothing is that young, so everything goes.
		req.Seq = keepFrom
	}
	if req.Filter == DLQPrefix+".>" {
		req.Filter = ""
	}
	return purge(ctx, in.js, DLQStream, req)
}
