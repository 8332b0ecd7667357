package metrics

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/workers"
)

// Attempt outcomes of jetfleet_jobs_processed_total.
const (
	OutcomeSucceeded = "succeeded"
	OutcomeFailed    = "failed"
	// OutcomeReleased: the handler returned workers.Release; the attempt
	// used no try.
	OutcomeReleased = "released"
)

// UnknownKind is the kind label of every job whose kind is not among those
// given to Jobs.LimitKinds: a publisher cannot add a series per made-up
// kind. It cannot be a real kind's name (those match [a-z0-9_-]+).
const UnknownKind = "(unknown)"

// durationBuckets span a few milliseconds to ten minutes, in seconds.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// Jobs counts jobs from dispatch to their end. Feed it from three places:
// Dispatched as bus.Config.OnDispatched (in processes that dispatch),
// Middleware in workers.Config.Middleware and Outcome as
// workers.Config.OnOutcome (in worker processes). It is safe for
// concurrent use.
type Jobs struct {
	dispatched   *prometheus.CounterVec
	started      *prometheus.CounterVec
	processed    *prometheus.CounterVec
	retried      *prometheus.CounterVec
	deadLettered *prometheus.CounterVec
	handedBack   *prometheus.CounterVec
	cancelled    *prometheus.CounterVec
	released     *prometheus.CounterVec
	runTime      *prometheus.HistogramVec
	waitTime     *prometheus.HistogramVec
	// known holds the kinds LimitKinds allows as labels; nil: every kind.
	known atomic.Pointer[map[string]struct{}]

	// series caches each queue and kind label's series of Middleware,
	// so that a job costs no label lookup.
	mu     sync.RWMutex
	series map[[2]string]*attemptSeries
}

// attemptSeries are the series Middleware feeds for one queue and kind.
type attemptSeries struct {
	started                       prometheus.Counter
	wait, run                     prometheus.Observer
	succeeded, failed, releasedOK prometheus.Counter
}

// attempt returns the series of queue and kind (a label value).
func (j *Jobs) attempt(queue, kind string) *attemptSeries {
	key := [2]string{queue, kind}
	j.mu.RLock()
	a := j.series[key]
	j.mu.RUnlock()
	if a != nil {
		return a
	}
	a = &attemptSeries{
		started:    j.started.WithLabelValues(queue, kind),
		wait:       j.waitTime.WithLabelValues(queue, kind),
		run:        j.runTime.WithLabelValues(queue, kind),
		succeeded:  j.processed.WithLabelValues(queue, kind, OutcomeSucceeded),
		failed:     j.processed.WithLabelValues(queue, kind, OutcomeFailed),
		releasedOK: j.processed.WithLabelValues(queue, kind, OutcomeReleased),
	}
	j.mu.Lock()
	if j.series == nil {
		j.series = map[[2]string]*attemptSeries{}
	}
	j.series[key] = a
	j.mu.Unlock()
	return a
}

// NewJobs creates the job metrics and registers them on reg.
func NewJobs(reg prometheus.Registerer) (*Jobs, error) {
	qk := []string{"queue", "kind"}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	histogram := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: durationBuckets}, qk)
	}
	j := &Jobs{
		dispatched:   counter("jetfleet_jobs_dispatched_total", "Jobs stored by a Dispatcher of this process.", qk...),
		started:      counter("jetfleet_jobs_started_total", "Job attempts started by this process's workers.", qk...),
		processed:    counter("jetfleet_jobs_processed_total", "Job attempts finished by this process's workers, by outcome (succeeded, failed, released).", "queue", "kind", "outcome"),
		retried:      counter("jetfleet_jobs_retried_total", "Failed attempts handed back to the queue for a retry after their backoff.", qk...),
		deadLettered: counter("jetfleet_jobs_dead_lettered_total", "Jobs that failed for good and were stored in DLQ.", qk...),
		handedBack:   counter("jetfleet_jobs_handed_back_total", "Jobs a drain handed back to the queue unfinished.", qk...),
		cancelled:    counter("jetfleet_jobs_cancelled_total", "Jobs cancelled before or while this process's workers ran them; not retried, not dead-lettered.", qk...),
		released:     counter("jetfleet_jobs_released_total", "Jobs stored again to run later without using a try: released by their handler, or by a fleet-wide limit with no room for them.", qk...),
		runTime:      histogram("jetfleet_job_run_duration_seconds", "Run time of job attempts."),
		waitTime:     histogram("jetfleet_job_wait_duration_seconds", "Time from a job's dispatch (or its delay's end) to the start of its first attempt."),
	}
	err := register(reg, j.dispatched, j.started, j.processed, j.retried, j.deadLettered, j.handedBack, j.cancelled, j.released, j.runTime, j.waitTime)
	if err != nil {
		return nil, err
	}
	return j, nil
}

// LimitKinds makes kinds (a worker's registered kinds, workers.Worker.Kinds)
// the only kind label values: every other kind, such as one published raw
// that no handler serves, is counted under UnknownKind, so the number of
// series stays bounded whatever is published. Call it once the handlers
// are registered; it is safe to call while the counters are fed. Without
// it every kind is its own label value.
func (j *Jobs) LimitKinds(kinds []string) {
	set := make(map[string]struct{}, len(kinds))
	for _, k := range kinds {
		set[k] = struct{}{}
	}
	j.known.Store(&set)
}

// kindLabel is kind, or UnknownKind when LimitKinds does not allow it.
func (j *Jobs) kindLabel(kind string) string {
	known := j.known.Load()
	if known == nil {
		return kind
	}
	if _, ok := (*known)[kind]; ok {
		return kind
	}
	return UnknownKind
}

// Dispatched counts one stored job; use it as bus.Config.OnDispatched.
func (j *Jobs) Dispatched(queue, kind string) {
	j.dispatched.WithLabelValues(queue, j.kindLabel(kind)).Inc()
}

// Middleware counts every attempt's start and end, its run time, and the
// first attempt's wait since the job was stored (bus.Job.EnqueuedAt). A
// panicking handler counts as failed.
func (j *Jobs) Middleware() workers.Middleware {
	return func(next workers.HandlerFunc) workers.HandlerFunc {
		return func(ctx context.Context, job *bus.Job) error {
			a := j.attempt(job.Queue, j.kindLabel(job.Kind))
			a.started.Inc()
			began := time.Now()
			if job.Attempt <= 1 && !job.EnqueuedAt.IsZero() {
				a.wait.Observe(max(began.Sub(job.EnqueuedAt), 0).Seconds())
			}
			outcome := a.failed
			defer func() {
				a.run.Observe(time.Since(began).Seconds())
				outcome.Inc()
			}()
			err := next(ctx, job)
			switch {
			case err == nil:
				outcome = a.succeeded
			case workers.IsRelease(err):
				outcome = a.releasedOK
			}
			return err
		}
	}
}

// Outcome counts what became of a delivery once the server confirmed it;
// use it as workers.Config.OnOutcome. Successes are already counted by
// Middleware; retries, dead letters, hand-backs, cancels and releases are counted
// here.
func (j *Jobs) Outcome(queue, kind string, o workers.Outcome) {
	kind = j.kindLabel(kind)
	switch o {
	case workers.Retried:
		j.retried.WithLabelValues(queue, kind).Inc()
	case workers.DeadLettered:
		j.deadLettered.WithLabelValues(queue, kind).Inc()
	case workers.HandedBack:
		j.handedBack.WithLabelValues(queue, kind).Inc()
	case workers.Cancelled:
		j.cancelled.WithLabelValues(queue, kind).Inc()
	case workers.Released:
		j.released.WithLabelValues(queue, kind).Inc()
	}
}

// Outcomes returns a workers.Config.OnOutcome that calls each of fns, for a
// process that feeds both Jobs and a Sampler.
func Outcomes(fns ...func(queue, kind string, o workers.Outcome)) func(queue, kind string, o workers.Outcome) {
	return func(queue, kind string, o workers.Outcome) {
		for _, fn := range fns {
			fn(queue, kind, o)
		}
	}
}
