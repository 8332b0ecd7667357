package workers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
)

// probeWait is how long an idle worker's wake-up probe stays parked on a
// queue's consumer before it is renewed.
const probeWait = 30 * time.Second

// loop is the state of one Run.
type loop struct {
	w       *Worker
	pullers map[string]*puller
	ackWait time.Duration

	// jobCtx ends only when the drain's grace runs out, not when Run's
	// context ends; running jobs' contexts end with it (cancelJobs).
	// Their parent is jobBase, which has its values but no cancellation,
	// so that starting a job registers nothing with a context every job
	// shares (a lock and a map all job goroutines contend for).
	jobCtx    context.Context
	jobBase   context.Context
	cancelJob context.CancelFunc

	running  sync.WaitGroup
	slots    chan struct{} // one token per running job
	held     atomic.Int64  // jobs fetched and not yet finished: queued in work or running
	pace     *pace         // how long handlers take, to size the prefetch (prefetch.go)
	finished chan struct{} // a job finished (buffered, coalescing)
	// work feeds the job goroutines: twice Concurrency of them, since a
	// job's slot is freed before its outcome is settled with the server.
	// It also holds the jobs fetched ahead of free slots.
	work   chan *run
	wake   chan struct{} // a probe saw a ready job, or a queue was resumed (buffered, coalescing)
	probes map[string]*probe
	pauses *pauses        // which queues are paused (pause.go)
	dlq    *bus.Inspector // finds a redelivered job's dead letter (execute.go)
	tally  *tally         // settled jobs per queue, for the presence record (presence.go)
	status *tracker       // running jobs, cancels and job records (status.go)
	// batches records the outcomes of batch jobs before they are settled (batch.go).
	batches *batchLog
	done    int // jobs finished, for MaxJobs

	// id is this process's key in bus.WorkersBucket (presence.go).
	id string
	// limits holds the fleet-wide limits and the jobs waiting for them
	// (limits.go); nil without limits.
	limits *limiter

	mu       sync.Mutex
	inFlight map[*run]struct{}
}

// Run takes and runs jobs until ctx ends or a stop condition (MaxJobs,
// MaxTime, StopWhenEmpty) is met, then drains: it fetches nothing more,
// lets running jobs finish within Config.Grace, hands back those that
// cannot, and returns nil. It provisions the streams and its queues'
// consumers first.
func (w *Worker) Run(ctx context.Context) error {
	w.started.Store(true)
	qs, weighted, err := parseQueues(w.cfg.Queues)
	if err != nil {
		return err
	}
	w.queues, w.weighted = qs, weighted
	w.wrapMiddleware()
	l, err := w.newLoop(ctx)
	if err != nil {
		return err
	}
	w.health.running(l.queueNames())
	defer w.health.stopped()
	l.batches = newBatchLog(w.js, w.cfg.Bus, w.log)
	w.log.Info().Strs("queues", w.cfg.Queues).Int("concurrency", w.cfg.Concurrency).
		Strs("kinds", w.Kinds()).Msg("worker started")
	defer l.pauses.stop()
	defer l.status.stop()
	stopPresence := l.startPresence(ctx)
	beatCtx, stopBeats := context.WithCancel(context.WithoutCancel(ctx))
	go l.heartbeats(beatCtx)
	for range 2 * w.cfg.Concurrency {
		go l.runJobs()
	}
	l.fetchLoop(ctx, w.stopDeadline())
	l.limits.handBack()
	l.drain()
	l.limits.stop()
	l.batches.stop(w.cfg.Grace)
	l.flushSettlements()
	close(l.work)
	l.closePullers()
	stopBeats()
	stopPresence()
	w.log.Info().Int("jobs", l.done).Msg("worker stopped")
	return nil
}

func (w *Worker) newLoop(ctx context.Context) (*loop, error) {
	names := make([]string, len(w.queues))
	for i, q := range w.queues {
		names[i] = q.name
	}
	if err := bus.EnsureQueues(ctx, w.js, w.cfg.Bus, names...); err != nil {
		return nil, fmt.Errorf("workers: %w", err)
	}
	l := &loop{
		w: w, pullers: map[string]*puller{}, probes: map[string]*probe{},
		slots: make(chan struct{}, w.cfg.Concurrency), pace: &pace{},
		finished: make(chan struct{}, 1), wake: make(chan struct{}, 1),
		work:     make(chan *run, w.cfg.Concurrency+maxAhead),
		inFlight: map[*run]struct{}{}, tally: newTally(), id: workerID(),
	}
	l.jobCtx, l.cancelJob = context.WithCancel(context.WithoutCancel(ctx))
	l.jobBase = context.WithoutCancel(l.jobCtx)
	var err error
	if l.dlq, err = bus.NewInspector(w.js, w.cfg.Bus); err != nil {
		return nil, fmt.Errorf("workers: %w", err)
	}
	for _, name := range names {
		c, err := w.js.Consumer(ctx, bus.JobsStream, bus.ConsumerName(name))
		if err != nil {
			return nil, fmt.Errorf("workers: consumer for queue %s: %w", name, err)
		}
		if l.pullers[name], err = newPuller(w.js, name); err != nil {
			l.closePullers()
			return nil, err
		}
		l.ackWait = c.CachedInfo().Config.AckWait
		l.probes[name] = newProbe(c, l.wake)
	}
	if l.pauses, err = watchPauses(ctx, w.js, w.cfg.Bus, names, l.wake, w.log); err != nil {
		return nil, err
	}
	l.status = newTracker(w.js.Conn(), !w.cfg.Bus.NoHistory, w.log)
	if err := l.status.listen(); err != nil {
		l.pauses.stop()
		return nil, err
	}
	if l.limits, err = startLimits(ctx, l, l.id); err != nil {
		l.status.stop()
		l.pauses.stop()
		return nil, err
	}
	return l, nil
}

func (w *Worker) stopDeadline() <-chan time.Time {
	if w.cfg.MaxTime <= 0 {
		return nil
	}
	return time.After(w.cfg.MaxTime)
}

// fetchLoop fills free slots, and the prefetch beyond them, until ctx ends
// or a stop condition is met. With a prefetch it refills once half of what
// it may hold has finished, so each pull is a batch and the job goroutines
// never wait for a round trip; without one it fetches as soon as a slot is
// free.
func (l *loop) fetchLoop(ctx context.Context, stopAt <-chan time.Time) {
	probeCtx, stopProbes := context.WithCancel(ctx)
	defer stopProbes()
	defer l.w.health.endTurn()
	for ctx.Err() == nil && !l.reachedMaxJobs() {
		l.w.health.beginTurn()
		debugTurnHook()
		held := int(l.held.Load()) - l.limits.waitingNow() // jobs waiting for a limit hold no run slot
		ahead := l.pace.prefetch(l.w.cfg.Concurrency)
		if free := l.fetchable(l.w.cfg.Concurrency + ahead - held); free > 0 && (held == 0 || free >= refillAt(ahead, l.w.cfg.Concurrency)) {
			started := l.fetchAndStart(ctx, free)
			if started > 0 {
				continue
			}
			if l.w.cfg.StopWhenEmpty && l.held.Load() == 0 {
				return
			}
			l.armProbes(probeCtx)
		}
		l.w.health.endTurn()
		select {
		case <-ctx.Done():
		case <-stopAt:
			return
		case <-l.finished:
		case <-l.wake:
		}
	}
}

// refillAt is how many free places make a fetch worth its round trip: one
// without a prefetch (a free slot is filled at once), else half of all.
func refillAt(ahead, concurrency int) int {
	if ahead == 0 {
		return 1
	}
	return max(1, (concurrency+ahead)/2)
}

// fetchable caps free by what MaxJobs still allows.
func (l *loop) fetchable(free int) int {
	if l.w.cfg.MaxJobs <= 0 {
		return free
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return min(free, l.w.cfg.MaxJobs-l.done-int(l.held.Load()))
}

func (l *loop) reachedMaxJobs() bool {
	if l.w.cfg.MaxJobs <= 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.done >= l.w.cfg.MaxJobs
}

// fetchAndStart asks the queues, in this round's order, for up to free
// ready jobs without waiting, and starts them. In strict mode a later queue
// is asked only for the places the earlier ones left free: strict priority
// holds at every fetch. In weighted mode each queue is first asked for its
// weight's share of free, so a large batch is split in proportion too, and
// then, in the same order, for what the others left.
func (l *loop) fetchAndStart(ctx context.Context, free int) int {
	order := fetchOrder(l.w.queues, l.w.weighted)
	started := 0
	if l.w.weighted {
		for i, share := range weightedShares(order, free, rand.IntN) {
			started += l.fetchFrom(ctx, order[i], share)
		}
	}
	for _, q := range order {
		started += l.fetchFrom(ctx, q, free-started)
	}
	return started
}

// fetchFrom takes up to n ready jobs from q, unless it is paused, and
// starts them.
func (l *loop) fetchFrom(ctx context.Context, q queue, n int) int {
	if n <= 0 || l.pauses.isPaused(q.name) {
		return 0
	}
	msgs, err := l.pullers[q.name].fetchNoWait(n)
	l.w.health.stepped()
	for _, m := range msgs {
		l.start(m)
	}
	if err != nil && ctx.Err() == nil {
		l.w.log.Warn().Err(err).Str("queue", q.name).Msg("fetch failed")
	}
	return len(msgs)
}

func (l *loop) closePullers() {
	for _, p := range l.pullers {
		p.close()
	}
}

func (l *loop) armProbes(ctx context.Context) {
	for name, p := range l.probes {
		if !l.pauses.isPaused(name) { // a paused queue's jobs must not wake the loop
			p.arm(ctx)
		}
	}
}

// flushSettlements waits until the server has received every ack, nak and
// term sent so far (acks are not confirmed one by one), so that a process
// exiting after Run does not leave finished jobs to be delivered again.
func (l *loop) flushSettlements() {
	if err := l.w.js.Conn().FlushTimeout(5 * time.Second); err != nil {
		l.w.log.Warn().Err(err).Msg("could not flush the last acks; their jobs may be delivered again")
	}
}

// drain waits up to Grace for running jobs, then hands back the rest.
func (l *loop) drain() {
	idle := make(chan struct{})
	go func() { l.running.Wait(); close(idle) }()
	select {
	case <-idle:
		return
	case <-time.After(l.w.cfg.Grace):
	}
	l.w.log.Warn().Dur("grace", l.w.cfg.Grace).Msg("grace over: cancelling running jobs and handing them back")
	l.cancelJobs()
	select {
	case <-idle:
	case <-time.After(time.Second):
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for r := range l.inFlight {
		r.finish(func() error { return r.msg.Nak() }, "handed back")
	}
}

// probe parks a pull request with a one-byte budget on a queue's consumer.
// JetStream answers it with "409 Message Size Exceeds MaxBytes" as soon as
// a job is ready there, without delivering the job, so an idle worker
// learns of new, delayed and retried jobs at once while it costs nothing:
// one parked request per queue, renewed every probeWait.
type probe struct {
	c      jetstream.Consumer
	wake   chan<- struct{}
	mu     sync.Mutex
	parked bool
}

func newProbe(c jetstream.Consumer, wake chan<- struct{}) *probe {
	return &probe{c: c, wake: wake}
}

func (p *probe) arm(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.parked {
		return
	}
	p.parked = true
	go p.park(ctx)
}

func (p *probe) park(ctx context.Context) {
	defer func() {
		p.mu.Lock()
		p.parked = false
		p.mu.Unlock()
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}()
	pctx, cancel := context.WithTimeout(ctx, probeWait)
	defer cancel()
	batch, err := p.c.Fetch(1, jetstream.FetchMaxBytes(1), jetstream.FetchContext(pctx))
	if err == nil {
		for m := range batch.Messages() {
			// Cannot happen with a one-byte budget; never lose a job if it does.
			_ = m.Nak()
		}
		err = batch.Error()
	}
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		// The server is unreachable or the consumer is gone: wait a moment
		// so a broken connection does not become a busy loop.
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// cancelJobs ends the context of every running job and of every job that
// starts after it (execute checks jobCtx once its job is registered).
func (l *loop) cancelJobs() {
	l.cancelJob()
	l.status.cancelAll(context.Canceled)
}
