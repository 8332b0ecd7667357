package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Key-value buckets of the wire contract. Both are plain NATS KV buckets, so
// `nats kv ls jetfleet_queues` and `nats kv get jetfleet_workers <key>` show
// them too.
const (
	// PauseBucket holds one key per paused queue (key: the queue name, value
	// PausedValue). Workers watch it and stop taking jobs from a queue whose
	// key holds PausedValue; deleting the key resumes the queue.
	PauseBucket = "jetfleet_queues"
	// PausedValue marks a queue as paused in PauseBucket.
	PausedValue = "paused"
	// WorkersBucket holds one key per running worker process, a
	// WorkerRecord as JSON, rewritten at every heartbeat. The bucket's
	// MaxAge (WorkerRecordTTL) drops the record of a worker that died.
	WorkersBucket = "jetfleet_workers"
	// WorkerRecordTTL is WorkersBucket's MaxAge: a worker that has not
	// written its record for this long is gone from the list.
	WorkerRecordTTL = 30 * time.Second
	// MaxPresenceInterval is the longest interval between a worker's
	// record writes that keeps a live worker's record inside
	// WorkerRecordTTL with room for two missed writes.
	MaxPresenceInterval = 10 * time.Second
)

// WorkerRecord is what a worker process publishes about itself in
// WorkersBucket every few seconds (workers.Config.PresenceInterval).
type WorkerRecord struct {
	// ID is the record's key: host, process ID and a random suffix.
	ID string `json:"id"`
	// Host and PID say where the process runs.
	Host string `json:"host"`
	PID  int    `json:"pid"`
	// Queues are the queues it takes jobs from, as configured ("high:6").
	Queues []string `json:"queues"`
	// Concurrency is how many jobs it runs at once; Running how many run now.
	Concurrency int `json:"concurrency"`
	Running     int `json:"running"`
	// StartedAt is when it started; HeartbeatAt when it wrote this record.
	StartedAt   time.Time `json:"started_at"`
	HeartbeatAt time.Time `json:"heartbeat_at"`
	// Counts holds, per queue name, what this process has done.
	Counts map[string]JobCounts `json:"counts,omitempty"`
}

// JobCounts counts the outcomes of one worker's jobs on one queue: totals
// since the process started, and the same over about the last minute (the
// window between this heartbeat and the newest heartbeat at least 60
// seconds older, or the process start; so 60 to 60+heartbeat seconds).
type JobCounts struct {
	// Processed jobs succeeded; Retried attempts failed and will run again;
	// Failed jobs were dead-lettered.
	Processed uint64 `json:"processed"`
	Retried   uint64 `json:"retried"`
	Failed    uint64 `json:"failed"`
	// The same, over the last minute.
	ProcessedLastMinute uint64 `json:"processed_1m"`
	RetriedLastMinute   uint64 `json:"retried_1m"`
	FailedLastMinute    uint64 `json:"failed_1m"`
}

// PauseBucketConfig is the PauseBucket as cfg describes it: file storage
// (a pause survives restarts) with one value per key.
func PauseBucketConfig(cfg Config) jetstream.KeyValueConfig {
	cfg = cfg.withDefaults()
	return jetstream.KeyValueConfig{
		Bucket:      PauseBucket,
		Description: "jetfleet paused queues: key = queue, value \"paused\"",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	}
}

// WorkersBucketConfig is the WorkersBucket as cfg describes it: in memory
// (it is rewritten every few seconds) with WorkerRecordTTL as MaxAge.
func WorkersBucketConfig(cfg Config) jetstream.KeyValueConfig {
	cfg = cfg.withDefaults()
	return jetstream.KeyValueConfig{
		Bucket:      WorkersBucket,
		Description: "jetfleet worker processes and their job counts, one key per process",
		History:     1,
		TTL:         WorkerRecordTTL,
		Storage:     jetstream.MemoryStorage,
		Replicas:    cfg.Replicas,
	}
}

// EnsureBucket returns the bucket kc names, creating it from kc when it is
// missing. An existing bucket is used as it is, never updated, so an
// operator's settings survive (as EnsureQueues does for streams). A
// cluster's "insufficient resources" (503), answered for a moment after it
// forms, is retried for up to 30 seconds.
func EnsureBucket(ctx context.Context, js jetstream.JetStream, kc jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := untilSettled(ctx, func() error {
		var err error
		if kv, err = js.KeyValue(ctx, kc.Bucket); !errors.Is(err, jetstream.ErrBucketNotFound) {
			return err
		}
		kv, err = js.CreateKeyValue(ctx, kc)
		if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return errRetry // another process created it in between: look it up again
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bus: bucket %s: %w", kc.Bucket, err)
	}
	return kv, nil
}
