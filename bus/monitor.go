package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// QueueBusySubject is where Monitor's callers publish a QueueBusyEvent for
// each queue in ALERT (plain NATS, not JetStream: subscribe with
// `nats sub jetfleet.events.queue.busy`).
const QueueBusySubject = "jetfleet.events.queue.busy"

// QueueLimit is one queue the monitor watches: ALERT when more than Max
// jobs are ready, or (MaxWait > 0) when the oldest ready job has waited
// longer than MaxWait.
type QueueLimit struct {
	// Queue is the queue's name.
	Queue string
	// Max is the most ready jobs that are still OK.
	Max uint64
	// MaxWait, when positive, is the longest wait of the oldest ready job
	// that is still OK.
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

// MonitorRow is one queue's result of Monitor: its limit, the counts it
// was checked on (named as in QueueStats) and the verdict.
type MonitorRow struct {
	QueueLimit
	// Ready is how many jobs wait for a worker (QueueStats.Ready).
	Ready uint64
	// OldestReady is how long the oldest ready job has waited; 0 when none
	// (QueueStats.OldestReady).
	OldestReady time.Duration
	// Alert is true when Ready is over Max or OldestReady over MaxWait.
	Alert bool
}

// Monitor checks each queue against its limit, as Laravel's queue:monitor
// does. An unknown queue is an error wrapping ErrUnknownQueue.
func (in *Inspector) Monitor(ctx context.Context, limits []QueueLimit) ([]MonitorRow, error) {
	infos, err := in.consumers(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []MonitorRow
	for _, l := range limits {
		var found bool
		for _, ci := range infos {
			if ci.Name != wire.ConsumerName(l.Queue) {
				continue
			}
			found = true
			row := MonitorRow{QueueLimit: l, Ready: ci.NumPending}
			if row.Ready > 0 {
				if row.OldestReady, err = in.oldestReady(ctx, ci, now); err != nil {
					return nil, err
				}
			}
			row.Alert = row.Ready > l.Max || l.MaxWait > 0 && row.OldestReady > l.MaxWait
			out = append(out, row)
		}
		if !found {
			return nil, in.knownQueue(ctx, l.Queue)
		}
	}
	return out, nil
}

// QueueBusyEvent is the JSON published on QueueBusySubject: a MonitorRow
// in ALERT.
type QueueBusyEvent struct {
	// Queue is the queue's name.
	Queue string `json:"queue"`
	// Ready is the number of ready jobs; Max the limit it is checked on.
	Ready uint64 `json:"ready"`
	Max   uint64 `json:"max"`
	// OldestReady is how long the oldest ready job has waited, MaxWait its
	// limit (0 when not set); both in seconds.
	OldestReady float64 `json:"oldest_ready"`
	MaxWait     float64 `json:"max_wait"`
	// At is when the monitor saw it (RFC 3339).
	At time.Time `json:"at"`
}

// PublishBusy publishes a QueueBusyEvent for each row in ALERT and
// returns how many it published. The events are flushed to the server
// before it returns.
func PublishBusy(ctx context.Context, nc *nats.Conn, rows []MonitorRow) (int, error) {
	n := 0
	for _, row := range rows {
		if !row.Alert {
			continue
		}
		ev := QueueBusyEvent{
			Queue: row.Queue, Ready: row.Ready, Max: row.Max,
			OldestReady: row.OldestReady.Seconds(), MaxWait: row.MaxWait.Seconds(), At: time.Now().UTC(),
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
