package workers

// Health of a worker process, for the probes of package node's `work`:
// Live (the fetch loop is not stuck) and Ready (NATS connected, each
// queue's consumer answering).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jetfleet/jetfleet/bus"
)

// DefaultStuckAfter is Config.StuckAfter's default.
const DefaultStuckAfter = time.Minute

// MinStuckAfter is the least Config.StuckAfter: a step of the fetch loop
// (one queue's pull) waits up to 5s for a server that does not answer
// (NATS down, a leader election), so a shorter limit would fail Live
// during an outage, when a restart cures nothing.
const MinStuckAfter = 10 * time.Second

// Worker states for Live and Ready.
const (
	stateStarting int32 = iota
	stateRunning
	stateStopped
)

// health is what Live and Ready read, written by Run and its fetch loop.
type health struct {
	state  atomic.Int32
	turn   atomic.Int64 // when the fetch loop's current turn began (Unix ns); 0 while it waits
	queues atomic.Pointer[[]string]
}

// running records that the fetch loop of queues is about to start.
func (h *health) running(queues []string) {
	h.queues.Store(&queues)
	h.state.Store(stateRunning)
}

func (h *health) stopped() { h.state.Store(stateStopped) }

// beginTurn marks the fetch loop at work: pulling and handing out jobs.
func (h *health) beginTurn() { h.turn.Store(time.Now().UnixNano()) }

// stepped marks a step of the turn done, one queue's pull answered or
// given up: the loop moves on, so the clock starts again. With NATS down
// each pull waits out its 5s, and a turn over many queues is slow, not
// stuck: Live judges the longest step, which MinStuckAfter outlasts.
// Only the fetch loop writes turn, so the check and the store do not race.
func (h *health) stepped() {
	if h.turn.Load() != 0 {
		h.beginTurn()
	}
}

// endTurn marks it waiting: for a free slot, a ready job or a stop.
func (h *health) endTurn() { h.turn.Store(0) }

// ErrStuck is wrapped by Live's error when a turn of the fetch loop has
// taken longer than Config.StuckAfter.
var ErrStuck = errors.New("the fetch loop is stuck")

// Live reports whether the worker's fetch loop is alive. It is nil while
// Run starts, while the loop waits (for a free slot, a ready job or a
// resumed queue: an idle worker and one whose slots are all busy are
// alive) and during a turn of pulling and handing out jobs while each
// step of it (one queue's pull and its jobs) ends within
// Config.StuckAfter; an error wrapping ErrStuck once a step has taken
// longer, and an error once Run has returned. It is cheap: two atomic
// loads.
func (w *Worker) Live() error {
	switch w.health.state.Load() {
	case stateStopped:
		return errors.New("the worker has stopped")
	case stateStarting:
		return nil
	}
	began := w.health.turn.Load()
	if began == 0 {
		return nil
	}
	if busy := time.Since(time.Unix(0, began)); busy > w.cfg.StuckAfter {
		return fmt.Errorf("%w: one step of its turn has taken %s, more than %s", ErrStuck, busy.Round(time.Millisecond), w.cfg.StuckAfter)
	}
	return nil
}

// Ready reports whether the worker can take jobs: Run has provisioned its
// queues, the NATS connection is up, and the consumer of each queue
// answers (one JetStream API request per queue).
func (w *Worker) Ready(ctx context.Context) error {
	switch w.health.state.Load() {
	case stateStarting:
		return errors.New("the worker is starting")
	case stateStopped:
		return errors.New("the worker has stopped")
	}
	if nc := w.js.Conn(); !nc.IsConnected() {
		return fmt.Errorf("NATS connection is %s", strings.ToLower(nc.Status().String()))
	}
	for _, q := range *w.health.queues.Load() {
		if _, err := w.js.Consumer(ctx, bus.JobsStream, bus.ConsumerName(q)); err != nil {
			return fmt.Errorf("consumer %s of queue %s does not answer: %w", bus.ConsumerName(q), q, err)
		}
	}
	return nil
}

// queueNames are the names of the loop's queues, without weights.
func (l *loop) queueNames() []string {
	names := make([]string, 0, len(l.w.queues))
	for _, q := range l.w.queues {
		names = append(names, q.name)
	}
	return names
}
