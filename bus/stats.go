package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// QueueStats is the state of one queue.
type QueueStats struct {
	// Queue is the queue's name.
	Queue string `json:"queue"`
	// Ready jobs wait for a worker (the consumer's pending count). The
	// server counts a job here a moment after it acknowledges storing it,
	// so a count read straight after a dispatch may not include it yet.
	Ready uint64 `json:"ready"`
	// InFlight jobs are delivered and not yet acknowledged: running, or
	// waiting out a retry's backoff.
	InFlight uint64 `json:"in_flight"`
	// Delayed jobs wait for their time (schedules.delay.<queue>.*).
	// Periodic schedules are listed by `jetfleet schedule list` instead.
	Delayed uint64 `json:"delayed"`
	// Failed jobs are in DLQ.
	Failed uint64 `json:"failed"`
	// OldestReady is how long the oldest ready job has waited; 0 when none.
	OldestReady time.Duration `json:"oldest_ready_ns"`
	// Paused is true while workers take no job from the queue.
	Paused bool `json:"paused"`
	// Workers is how many live worker processes take jobs from the queue.
	Workers int `json:"workers"`
	// ProcessedLastMinute and FailedLastMinute add up the live workers'
	// counts of jobs that succeeded and that were dead-lettered in about
	// the last minute (see JobCounts).
	ProcessedLastMinute uint64 `json:"processed_1m"`
	FailedLastMinute    uint64 `json:"failed_1m"`
	// Waiting adds up the jobs the live workers hold that wait for a slot
	// of a concurrency cap or a token of a rate limit; WaitingKinds splits
	// it by kind. (Jobs a limit re-scheduled for later count as Delayed.)
	Waiting      uint64            `json:"waiting"`
	WaitingKinds map[string]uint64 `json:"waiting_kinds,omitempty"`
}

// Stats is a snapshot of every queue and worker.
type Stats struct {
	// At is when the snapshot was taken.
	At time.Time `json:"at"`
	// Queues holds one entry per queue with a consumer on JOBS, by name.
	Queues []QueueStats `json:"queues"`
	// Workers holds the live worker processes, by ID.
	Workers []WorkerRecord `json:"workers"`
	// FailedTotal counts every dead letter, of any queue.
	FailedTotal uint64 `json:"failed_total"`
	// FailedBytes is what the dead letters take in DLQ; FailedMaxBytes
	// is its limit (Config.FailedMaxBytes; -1 or 0: none). A full DLQ
	// refuses new letters and their jobs stay queued.
	FailedBytes    uint64 `json:"failed_bytes"`
	FailedMaxBytes int64  `json:"failed_max_bytes"`
}

// Queues lists the queues that have a consumer on JOBS, sorted.
func (in *Inspector) Queues(ctx context.Context) ([]string, error) {
	infos, err := in.consumers(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ci := range infos {
		out = append(out, strings.TrimPrefix(ci.Name, wire.ConsumerPrefix))
	}
	return out, nil
}

// consumers returns the queue consumers (q-<queue>) on JOBS, by name.
func (in *Inspector) consumers(ctx context.Context) ([]*jetstream.ConsumerInfo, error) {
	s, err := in.stream(ctx, JobsStream)
	if err != nil {
		return nil, err
	}
	var out []*jetstream.ConsumerInfo
	l := s.ListConsumers(ctx)
	for ci := range l.Info() {
		if q, ok := strings.CutPrefix(ci.Name, wire.ConsumerPrefix); ok && wire.ValidateName("queue", q) == nil {
			out = append(out, ci)
		}
	}
	if err := l.Err(); err != nil {
		return nil, fmt.Errorf("bus: list consumers of %s: %w", JobsStream, err)
	}
	slices.SortFunc(out, func(a, b *jetstream.ConsumerInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Stats takes a snapshot of every queue: its consumer's counts, the delayed
// and failed counts (one request each, counted by the server's subject
// index), the oldest ready job's age (one direct get of the first
// undelivered message), whether it is paused, and the live workers'
// records with their per-minute counts.
func (in *Inspector) Stats(ctx context.Context) (*Stats, error) {
	infos, err := in.consumers(ctx)
	if err != nil {
		return nil, err
	}
	st := &Stats{At: time.Now()}
	if st.Workers, err = in.Workers(ctx); err != nil {
		return nil, err
	}
	paused, err := in.Paused(ctx)
	if err != nil {
		return nil, err
	}
	dlq, err := in.stream(ctx, DLQStream)
	if err != nil {
		return nil, err
	}
	info := dlq.CachedInfo()
	st.FailedTotal, st.FailedBytes, st.FailedMaxBytes = info.State.Msgs, info.State.Bytes, info.Config.MaxBytes
	for _, ci := range infos {
		qs, err := in.queueStats(ctx, ci, st.At)
		if err != nil {
			return nil, err
		}
		qs.Paused = paused[qs.Queue]
		addWorkerCounts(&qs, st.Workers)
		st.Queues = append(st.Queues, qs)
	}
	return st, nil
}

func (in *Inspector) queueStats(ctx context.Context, ci *jetstream.ConsumerInfo, now time.Time) (QueueStats, error) {
	q := strings.TrimPrefix(ci.Name, wire.ConsumerPrefix)
	qs := QueueStats{Queue: q, Ready: ci.NumPending, InFlight: uint64(ci.NumAckPending)}
	var err error
	if qs.Delayed, err = countSubject(ctx, in.js, JobsStream, SchedulePrefix+".delay."+q+".>"); err != nil {
		return qs, err
	}
	if qs.Failed, err = countSubject(ctx, in.js, DLQStream, DLQPrefix+"."+q+".>"); err != nil {
		return qs, err
	}
	if qs.Ready > 0 {
		if qs.OldestReady, err = in.oldestReady(ctx, ci, now); err != nil {
			return qs, err
		}
	}
	return qs, nil
}

// oldestReady is the age of the first job on the queue's subjects past the
// consumer's last delivered sequence: the job that waits longest.
func (in *Inspector) oldestReady(ctx context.Context, ci *jetstream.ConsumerInfo, now time.Time) (time.Duration, error) {
	s, err := in.stream(ctx, JobsStream)
	if err != nil {
		return 0, err
	}
	m, err := s.GetMsg(ctx, ci.Delivered.Stream+1, jetstream.WithGetMsgSubject(ci.Config.FilterSubject))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("bus: oldest ready job of %s: %w", ci.Name, err)
	}
	return max(now.Sub(m.Time), 0), nil
}

func addWorkerCounts(qs *QueueStats, workers []WorkerRecord) {
	for _, w := range workers {
		serves := slices.ContainsFunc(w.Queues, func(spec string) bool {
			name, _, _ := strings.Cut(spec, ":")
			return name == qs.Queue
		})
		if serves {
			qs.Workers++
		}
		c := w.Counts[qs.Queue]
		qs.ProcessedLastMinute += c.ProcessedLastMinute
		qs.FailedLastMinute += c.FailedLastMinute
		addWaiting(qs, w.Waiting[qs.Queue]) // limits.go
	}
}

// Workers returns the records of the live worker processes (WorkersBucket),
// sorted by ID; none when no worker ever ran.
func (in *Inspector) Workers(ctx context.Context) ([]WorkerRecord, error) {
	kv, err := in.js.KeyValue(ctx, WorkersBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bus: bucket %s: %w", WorkersBucket, err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("bus: read %s: %w", WorkersBucket, err)
	}
	defer w.Stop()
	var out []WorkerRecord
	for e := range w.Updates() {
		if e == nil {
			break // every current value has been seen
		}
		var rec WorkerRecord
		if json.Unmarshal(e.Value(), &rec) == nil {
			out = append(out, rec)
		}
	}
	slices.SortFunc(out, func(a, b WorkerRecord) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// Pause makes every worker of the fleet stop taking jobs from queue within
// about a second (they watch PauseBucket); running jobs finish. Jobs can
// still be dispatched to it. The queue must exist (ErrUnknownQueue).
func (in *Inspector) Pause(ctx context.Context, queue string) error {
	kv, err := in.pauseBucket(ctx, queue)
	if err != nil {
		return err
	}
	if _, err := kv.PutString(ctx, queue, PausedValue); err != nil {
		return fmt.Errorf("bus: pause %s: %w", queue, err)
	}
	return nil
}

// Resume lets workers take jobs from queue again. Resuming a queue that is
// not paused does nothing.
func (in *Inspector) Resume(ctx context.Context, queue string) error {
	kv, err := in.pauseBucket(ctx, queue)
	if err != nil {
		return err
	}
	if err := kv.Delete(ctx, queue); err != nil {
		return fmt.Errorf("bus: resume %s: %w", queue, err)
	}
	return nil
}

func (in *Inspector) pauseBucket(ctx context.Context, queue string) (jetstream.KeyValue, error) {
	if err := in.knownQueue(ctx, queue); err != nil {
		return nil, err
	}
	return wire.EnsureBucket(ctx, in.js, wire.PauseBucketConfig(in.cfg.Replicas))
}

// knownQueue returns an error wrapping ErrUnknownQueue, listing the known
// queues, when queue has no consumer on JOBS.
func (in *Inspector) knownQueue(ctx context.Context, queue string) error {
	if err := wire.ValidateName("queue", queue); err != nil {
		return err
	}
	known, err := in.Queues(ctx)
	if err != nil {
		return err
	}
	if !slices.Contains(known, queue) {
		return fmt.Errorf("%w %q (known queues: %s)", ErrUnknownQueue, queue, strings.Join(known, ", "))
	}
	return nil
}

// Paused returns the paused queues.
func (in *Inspector) Paused(ctx context.Context) (map[string]bool, error) {
	kv, err := in.js.KeyValue(ctx, PauseBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bus: bucket %s: %w", PauseBucket, err)
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("bus: read %s: %w", PauseBucket, err)
	}
	defer w.Stop()
	out := map[string]bool{}
	for e := range w.Updates() {
		if e == nil {
			break
		}
		out[e.Key()] = string(e.Value()) == PausedValue
	}
	return out, nil
}
