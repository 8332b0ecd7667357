package bus

import (
	"context"
	"errors"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// maxEnsuredQueues bounds the queues a Dispatcher remembers having made
// sure of; past it, a queue is made sure of on every dispatch (one cheap
// request), so no input can make the set grow without bound.
const maxEnsuredQueues = 1024

// ensuredQueues are the queues whose consumer a Dispatcher has made sure
// of, so each costs one request per process.
type ensuredQueues struct {
	mu   sync.RWMutex
	seen map[string]struct{}
}

func (e *ensuredQueues) has(queue string) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	_, ok := e.seen[queue]
	return ok
}

func (e *ensuredQueues) add(queue string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.seen == nil {
		e.seen = map[string]struct{}{}
	}
	if len(e.seen) < maxEnsuredQueues {
		e.seen[queue] = struct{}{}
	}
}

// ensureQueue makes queue a real queue the first time this dispatcher
// sends a job to it: its consumer q-<queue> is created when missing, so
// `jetfleet queue stats`, `queue monitor` and the dashboard show its jobs
// before any worker has served it. An existing consumer is left as it is
// (workers own its settings). It never fails the dispatch: when the
// consumer cannot be created (an account that may only publish, say), the
// first worker of the queue creates it. A missing JOBS stream is tried
// again on the next dispatch; anything else is not.
func (d *Dispatcher) ensureQueue(ctx context.Context, queue string) {
	if d.ensured.has(queue) {
		return
	}
	_, err := d.js.CreateConsumer(ctx, JobsStream, wire.QueueConsumerConfig(d.cfg.topology(), queue))
	if errors.Is(err, jetstream.ErrStreamNotFound) || ctx.Err() != nil {
		return
	}
	d.ensured.add(queue)
}

// ensureQueueOf runs ensureQueue for the queue msg's job goes to (its
// subject, or its schedule target for a delayed or periodic job).
func (d *Dispatcher) ensureQueueOf(ctx context.Context, msg *nats.Msg) {
	if queue, _, ok := jobTarget(msg); ok {
		d.ensureQueue(ctx, queue)
	}
}

// jobTarget is the queue and kind of a job message: from its subject
// jobs.<queue>.<kind>, or from its schedule target when it is delayed or
// periodic.
func jobTarget(msg *nats.Msg) (queue, kind string, ok bool) {
	queue, kind, err := wire.ParseJobSubject(targetSubject(msg))
	return queue, kind, err == nil
}

// targetSubject is the subject a job message is for: its own, or a delayed
// or periodic job's schedule target.
func targetSubject(msg *nats.Msg) string {
	if target := msg.Header.Get(headerScheduleTarget); target != "" {
		return target
	}
	return msg.Subject
}
