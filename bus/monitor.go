package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/internal/wire"
)

// QueueBusySubject is where Monitor's callers publish a QueueBusyEvent for
// each queue in ALERT (plain NATS, not JetStream: subscribe with
// `nats sub jetfleet.events.queue.busy`).
const QueueBusySubject = "jetfleet.events.queue.busy"

// QueueLimit is one queue the monitor watches: ALERT when more than Max
// jobs are ready, or (MaxWait > 0) when the oldest ready job has waited
// longer than MaxWait.
type QueueLimit struct {
	Queue   string
	Max     uint64
	MaxWait time.Duration
}

// ParseQueueLimits reads Laravel's queue:monitor list, "high:100,default:1000".
// A queue without ":N" gets defaultMax.
func ParseQueueLimits(spec string, defaultMax uint64, maxWait time.Duration) ([]QueueLimit, error) {
	var out []QueueLimit
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, n, hasMax := strings.Cut(part, ":")
		if err := wire.ValidateName("queue", name); err != nil {
			return nil, err
		}
		l := QueueLimit{Queue: name, Max: defaultMax, MaxWait: maxWait}
		if hasMax {
			v, err := strconv.ParseUint(n, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%w: queue %q: max %q is not a whole number", ErrInvalid, name, n)
			}
			l.Max = v
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no queue to monitor (want a list like high:100,default:1000)", ErrInvalid)
	}
	return out, nil
}

// QueueStatus is one row of the monitor.
type QueueStatus struct {
	QueueLimit
	// Size is how many jobs are ready; OldestWait how long the oldest waited.
	Size       uint64
	OldestWait time.Duration
	// Alert is true when Size is over Max or OldestWait over MaxWait.
	Alert bool
}

// Monitor checks each queue against its limit, as Laravel's queue:monitor
// does. An unknown queue is an error wrapping ErrUnknownQueue.
func (in *Inspector) Monitor(ctx context.Context, limits []QueueLimit) ([]QueueStatus, error) {
	infos, err := in.consumers(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []QueueStatus
	for _, l := range limits {
		var found bool
		for _, ci := range infos {
			if ci.Name != wire.ConsumerName(l.Queue) {
				continue
			}
			found = true
			st := QueueStatus{QueueLimit: l, Size: ci.NumPending}
			if st.Size > 0 {
				if st.OldestWait, err = in.oldestReady(ctx, ci, now); err != nil {
					return nil, err
				}
			}
			st.Alert = st.Size > l.Max || l.MaxWait > 0 && st.OldestWait > l.MaxWait
			out = append(out, st)
		}
		if !found {
			return nil, in.knownQueue(ctx, l.Queue)
		}
	}
	return out, nil
}

// QueueBusyEvent is the JSON published on QueueBusySubject.
type QueueBusyEvent struct {
	Queue string `json:"queue"`
	// Size is the number of ready jobs; Max the limit it went over.
	Size uint64 `json:"size"`
	Max  uint64 `json:"max"`
	// OldestWait and MaxWait are in seconds; MaxWait is 0 when not set.
	OldestWait float64 `json:"oldest_wait"`
	MaxWait    float64 `json:"max_wait"`
	// At is when the monitor saw it (RFC 3339).
	At time.Time `json:"at"`
}

// PublishBusy publishes a QueueBusyEvent for each status in ALERT and
// returns how many it published. The events are flushed to the server
// before it returns.
func PublishBusy(ctx context.Context, nc *nats.Conn, statuses []QueueStatus) (int, error) {
	n := 0
	for _, st := range statuses {
		if !st.Alert {
			continue
		}
		ev := QueueBusyEvent{
			Queue: st.Queue, Size: st.Size, Max: st.Max,
			OldestWait: st.OldestWait.Seconds(), MaxWait: st.MaxWait.Seconds(), At: time.Now().UTC(),
		}
		b, err := json.Marshal(ev)
		if err != nil {
			return n, err
		}
		if err := nc.Publish(QueueBusySubject, b); err != nil {
			return n, fmt.Errorf("bus: publish %s: %w", QueueBusySubject, err)
		}
		n++
	}
	fctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if err := nc.FlushWithContext(fctx); err != nil {
		return n, fmt.Errorf("bus: publish %s: %w", QueueBusySubject, err)
	}
	return n, nil
}
