package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/jetfleet/jetfleet/bus"
)

// The worker's presence record: every Config.PresenceInterval it writes a
// bus.WorkerRecord (host, pid, queues, concurrency, running jobs, and per
// queue the jobs that succeeded, were retried and failed, in total and
// over the last minute) to its own key in bus.WorkersBucket. The bucket's
// MaxAge drops the key of a worker that died; a worker that stops cleanly
// deletes it. `jetfleet queue stats` adds the records up. One small KV put
// per worker every few seconds is the whole cost; the per-minute counts
// are computed here from a short ring of earlier samples, so readers need
// no history.

// window is the span of the "last minute" counts.
const window = time.Minute

// tally counts settled jobs per queue.
type tally struct {
	mu     sync.Mutex
	totals map[string]bus.JobCounts
}

func newTally() *tally { return &tally{totals: map[string]bus.JobCounts{}} }

// counter returns the function a run calls with each outcome settled with
// the server; the outcomes are those execute.go passes to run.finish.
func (t *tally) counter(subject string) func(outcome string) {
	queue := ""
	if parts := strings.Split(subject, "."); len(parts) >= 2 {
		queue = parts[1]
	}
	return func(outcome string) {
		t.mu.Lock()
		defer t.mu.Unlock()
		c := t.totals[queue]
		switch outcome {
		case "acked":
			c.Processed++
		case "retry":
			c.Retried++
		case "dead-lettered", "terminated":
			c.Failed++
		default:
			return
		}
		t.totals[queue] = c
	}
}

func (t *tally) snapshot() map[string]bus.JobCounts {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]bus.JobCounts, len(t.totals))
	for q, c := range t.totals {
		out[q] = c
	}
	return out
}

type sample struct {
	at     time.Time
	totals map[string]bus.JobCounts
}

// reporter writes the worker's presence record.
type reporter struct {
	kv jetstream.KeyValue
	// open opens bus.WorkersBucket, creating it when it is missing.
	open    func(context.Context) (jetstream.KeyValue, error)
	rec     bus.WorkerRecord
	tally   *tally
	running func() int
	waiting func() map[string]map[string]int
	samples []sample // oldest first; samples[0] is the baseline candidate
}

var keyUnsafe = regexp.MustCompile(`[^a-zA-Z0-9_-]+`)

// workerID is this process's key in bus.WorkersBucket, also written in the
// limit slots it takes: host, process ID and a random suffix.
func workerID() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d-%s", keyUnsafe.ReplaceAllString(host, "_"), os.Getpid(), nuid.Next()[16:])
}

// startPresence writes the worker's record now and every interval until
// the returned stop is called, which deletes it. Failing to reach the
// bucket is logged, not fatal: it costs the statistics, never a job.
func (l *loop) startPresence(ctx context.Context) (stop func()) {
	w := l.w
	kv, err := bus.OpenWorkersBucket(ctx, w.js, w.cfg.Bus)
	if err != nil {
		w.log.Warn().Err(err).Msg("no worker presence record: queue stats will not list this worker")
		return func() {}
	}
	host, _ := os.Hostname()
	now := time.Now()
	b := &reporter{
		kv: kv, open: func(ctx context.Context) (jetstream.KeyValue, error) {
			return bus.OpenWorkersBucket(ctx, w.js, w.cfg.Bus)
		},
		tally: l.tally, running: func() int { return len(l.slots) }, waiting: l.limits.waitingCounts,
		rec: bus.WorkerRecord{
			ID:   l.id,
			Host: host, PID: os.Getpid(), Queues: w.cfg.Queues, Concurrency: w.cfg.Concurrency, StartedAt: now.UTC(),
		},
		samples: []sample{{at: now, totals: map[string]bus.JobCounts{}}},
	}
	bctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.run(bctx, w.cfg.PresenceInterval, l)
	}()
	return func() {
		cancel()
		<-done
		dctx, dcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer dcancel()
		_ = kv.Delete(dctx, b.rec.ID)
	}
}

func (b *reporter) run(ctx context.Context, every time.Duration, l *loop) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := b.report(ctx, time.Now()); err != nil && ctx.Err() == nil {
			l.w.log.Warn().Err(err).Msg("worker presence record not written")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// report writes the record as of now.
func (b *reporter) report(ctx context.Context, now time.Time) error {
	totals := b.tally.snapshot()
	b.rec.HeartbeatAt = now.UTC()
	b.rec.Running = b.running()
	b.rec.Waiting = b.waiting()
	b.rec.Counts = lastMinute(totals, b.baseline(now))
	b.samples = append(b.samples, sample{at: now, totals: totals})
	data, err := json.Marshal(b.rec)
	if err != nil {
		return err
	}
	_, err = b.kv.Put(ctx, b.rec.ID, data)
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		// The bucket is gone: its server restarted, and the bucket lives
		// in memory. Make it again and write there.
		var kv jetstream.KeyValue
		if kv, err = b.open(ctx); err == nil {
			b.kv = kv
			_, err = b.kv.Put(ctx, b.rec.ID, data)
		}
	}
	if err != nil {
		return fmt.Errorf("write %s/%s: %w", bus.WorkersBucket, b.rec.ID, err)
	}
	return nil
}

// baseline is the newest sample at least a minute old (the process start
// when it is younger), after dropping the samples older than it, which no
// later report needs.
func (b *reporter) baseline(now time.Time) map[string]bus.JobCounts {
	i := 0
	for i+1 < len(b.samples) && !b.samples[i+1].at.After(now.Add(-window)) {
		i++
	}
	b.samples = b.samples[i:]
	return b.samples[0].totals
}

func lastMinute(totals, base map[string]bus.JobCounts) map[string]bus.JobCounts {
	out := make(map[string]bus.JobCounts, len(totals))
	for q, c := range totals {
		p := base[q]
		c.ProcessedLastMinute = c.Processed - p.Processed
		c.RetriedLastMinute = c.Retried - p.Retried
		c.FailedLastMinute = c.Failed - p.Failed
		out[q] = c
	}
	return out
}
