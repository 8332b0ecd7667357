package workers

import (
	"sync/atomic"
	"time"
)

// prefetchBudget bounds how long a job fetched ahead of a free slot should
// wait for one. A worker fetches ahead only as many jobs as its slots get
// through in this time at the pace its handlers have been running: for
// short jobs a pull's round trip is then hidden behind running work, and
// each pull is a batch; for long jobs the worker fetches ahead nothing and
// takes a job only for a free slot, so idle workers elsewhere get the rest.
//
// It is also the price of a prefetch in strict priority: a job that becomes
// ready on a higher queue may start after the lower queue's jobs fetched
// ahead, about this long later than it would have.
const prefetchBudget = time.Millisecond

// maxAhead caps the jobs fetched ahead of free slots, whatever the pace:
// as many as nats.go's Consume buffers by default.
const maxAhead = 500

// pace keeps a moving average of how long handlers take.
type pace struct {
	avg atomic.Int64 // nanoseconds; 0 until the first job
}

// observe adds one handler's duration to the average (weight 1/8).
func (p *pace) observe(took time.Duration) {
	for {
		old := p.avg.Load()
		next := int64(took)
		if old > 0 {
			next = old + (int64(took)-old)/8
		}
		if p.avg.CompareAndSwap(old, max(next, 1)) {
			return
		}
	}
}

// prefetch is how many jobs to fetch ahead of concurrency free slots: as
// many as the slots finish within prefetchBudget, at most maxAhead, none
// before the first job has run.
func (p *pace) prefetch(concurrency int) int {
	avg := p.avg.Load()
	if avg <= 0 {
		return 0
	}
	return int(min(maxAhead, int64(concurrency)*int64(prefetchBudget)/avg))
}
