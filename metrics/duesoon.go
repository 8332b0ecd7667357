package metrics

// The delayed jobs that come due soon, per queue: a scaler that sees a
// wave of delayed jobs a minute ahead can start workers before it
// arrives. JetStream keeps no index of delayed jobs by time, so the
// collector keeps one: it reads each delayed job once (bus.ScanDelayed,
// by stream sequence, from where the last read stopped) and remembers its
// ready time until that time has passed. It costs 8 bytes per waiting
// delayed job. A delayed job deleted before its time (cancelled, or its
// queue purged) is still counted until then.

import (
	"context"
	"time"

	"github.com/jetfleet/jetfleet/bus"
)

// dueScanLimit bounds the delayed jobs one refresh reads, so a first read
// of a large backlog is spread over a few scrapes.
const dueScanLimit = 50_000

// dueIndex is the ready times of the delayed jobs read so far.
type dueIndex struct {
	next uint64             // the stream sequence to read from
	due  map[string][]int64 // per queue, ready times in Unix ns, unsorted
}

// refresh reads the jobs delayed since the last refresh, forgets those
// whose time has passed, and returns per queue how many come due within
// window of now.
func (x *dueIndex) refresh(ctx context.Context, in *bus.Inspector, now time.Time, window time.Duration) (map[string]int, error) {
	if x.due == nil {
		x.due = map[string][]int64{}
	}
	next, err := in.ScanDelayed(ctx, x.next, dueScanLimit, func(j bus.DelayedJob) {
		x.due[j.Queue] = append(x.due[j.Queue], j.ReadyAt.UnixNano())
	})
	x.next = next
	if err != nil {
		return nil, err
	}
	return x.count(now, window), nil
}

// count drops the past ready times and counts those before now+window.
func (x *dueIndex) count(now time.Time, window time.Duration) map[string]int {
	from, until := now.UnixNano(), now.Add(window).UnixNano()
	out := make(map[string]int, len(x.due))
	for q, times := range x.due {
		kept := times[:0]
		for _, t := range times {
			if t >= from {
				kept = append(kept, t)
				if t < until {
					out[q]++
				}
			}
		}
		if len(kept) == 0 {
			delete(x.due, q)
			continue
		}
		x.due[q] = kept
	}
	return out
}
