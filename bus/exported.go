package bus

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// The parts of the wire contract that programs of their own (workers,
// tools, producers and consumers written with nats.go) call: names,
// durations as the headers carry them, dead-lettering and the buckets.

// MaxPresenceInterval is the longest interval between a worker's record
// writes to WorkersBucket that keeps a live worker's record inside
// WorkerRecordTTL with room for two missed writes.
const MaxPresenceInterval = wire.MaxPresenceInterval

// ConsumerName is the durable consumer all workers of queue share,
// "q-<queue>": `nats consumer info JOBS q-default` shows its backlog.
func ConsumerName(queue string) string { return wire.ConsumerName(queue) }

// JobSubject is the subject a job of kind is published to on queue,
// jobs.<queue>.<kind>, for programs that publish jobs with nats.go itself.
func JobSubject(queue, kind string) string { return wire.JobSubject(queue, kind) }

// ValidateName checks a queue, kind or schedule name against the wire
// contract's rule ([a-z0-9_-], 1 to 64 bytes). what ("queue", "kind")
// names it in the error, which wraps ErrInvalid.
func ValidateName(what, name string) error { return wire.ValidateName(what, name) }

// ValidateJobID checks a job ID against the wire contract's rule: UTF-8,
// no control character (Unicode Cc, U+0000 to U+001F and U+007F to U+009F).
// The error wraps ErrInvalid. Dispatch also refuses IDs over 256 bytes.
func ValidateJobID(id string) error { return wire.ValidateJobID(id) }

// LastReadyAt is the latest time a delayed job may be due (At, Delay):
// nats-server keeps a schedule's time in int64 nanoseconds, and fires one
// due later at once, so a dispatch refuses it.
func LastReadyAt() time.Time { return time.Unix(0, math.MaxInt64).UTC().Truncate(time.Second) }

// ValidateTags checks tags as a dispatch with Tags does: each 1 to
// MaxTagLen bytes of printable ASCII without spaces, '.', '*', '>' or ',',
// at most MaxTags of them once duplicates are dropped. The error names the
// first that breaks the rule and wraps ErrInvalid.
func ValidateTags(tags ...string) error {
	_, err := wire.ValidateTags(tags)
	return err
}

// ValidateTag checks a tag against the rule Tags applies: 1 to MaxTagLen
// bytes of printable ASCII without spaces, '.', '*', '>' and ','. The
// error wraps ErrInvalid.
func ValidateTag(tag string) error { return wire.ValidateTag(tag) }

// ParseDuration reads a duration as the Jetfleet-Timeout header carries
// it: a Go duration ("1m30s") or seconds ("90").
func ParseDuration(v string) (time.Duration, error) { return wire.ParseDuration(v) }

// ParseBackoff reads retry delays as the Jetfleet-Backoff header carries
// them: durations separated by commas ("1s,10s,60s").
func ParseBackoff(v string) ([]time.Duration, error) { return wire.ParseBackoff(v) }

// Failure says why and when a job is being dead-lettered.
type Failure struct {
	// Reason is the error text; it may span lines (a panic's stack).
	Reason string
	// Attempts is how many times the job ran (0 when it never could run).
	Attempts int
	// At is when it failed for good; default now.
	At time.Time
}

// DeadLetter stores job in the DLQ stream with its original body and
// headers plus Jetfleet-Error, -Attempts, -Failed-At, -Job-Id and -Origin,
// and waits for JetStream's acknowledgement, for a program that consumes
// jobs itself. Only after it returns nil may the caller remove the
// original (Term). Its Nats-Msg-Id is "JOBS:<seq>", so doing it twice, or
// from two processes at once, stores one dead letter.
func DeadLetter(ctx context.Context, js jetstream.JetStream, job *Job, f Failure) error {
	return wire.PublishDeadLetter(ctx, js, wire.DeadLetter{
		ID: job.ID, Queue: job.Queue, Kind: job.Kind, Seq: job.Seq, Header: job.Header, Body: job.Body,
		Reason: f.Reason, Attempts: f.Attempts, At: f.At,
	})
}

// OpenPauseBucket returns PauseBucket, creating it as cfg says when it is
// missing (an existing bucket is used as it is).
func OpenPauseBucket(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.KeyValue, error) {
	return wire.EnsureBucket(ctx, js, wire.PauseBucketConfig(cfg.Replicas))
}

// ProvisionBuckets creates the job bus's KV buckets with cfg's replicas,
// or updates existing ones to them: the workers' presence
// (WorkersBucket), paused queues (PauseBucket), unique keys
// (UniqueBucket) and fleet-wide limits (LimitsBucket). The deployment
// step that owns the topology calls it (`jetfleet up --replicas 3`):
// workers and dispatchers create a missing bucket with their own
// replicas, one by default, and on a cluster a bucket of one replica
// stops (every unique dispatch, every limit) while its node is down.
func ProvisionBuckets(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	for _, kc := range []jetstream.KeyValueConfig{
		wire.WorkersBucketConfig(cfg.Replicas), wire.PauseBucketConfig(cfg.Replicas),
		wire.UniqueBucketConfig(cfg.Replicas), wire.LimitsBucketConfig(cfg.Replicas),
	} {
		if err := provisionBucket(ctx, js, kc); err != nil {
			return err
		}
	}
	return nil
}

// provisionBucket creates or updates the bucket kc, trying again while
// the cluster settles.
func provisionBucket(ctx context.Context, js jetstream.JetStream, kc jetstream.KeyValueConfig) error {
	err := wire.UntilSettled(ctx, func() error {
		_, err := js.CreateOrUpdateKeyValue(ctx, kc)
		return err
	})
	if err != nil {
		return fmt.Errorf("bus: bucket %s: %w", kc.Bucket, err)
	}
	return nil
}

// ProvisionWorkersBucket creates WorkersBucket with cfg's replicas, or
// updates an existing one to them.
//
// Deprecated: use ProvisionBuckets, which provisions the job bus's other
// buckets (paused queues, unique keys, limits) too.
func ProvisionWorkersBucket(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	return provisionBucket(ctx, js, wire.WorkersBucketConfig(cfg.Replicas))
}

// OpenWorkersBucket returns WorkersBucket, creating it as cfg says when it
// is missing (an existing bucket is used as it is).
func OpenWorkersBucket(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.KeyValue, error) {
	return wire.EnsureBucket(ctx, js, wire.WorkersBucketConfig(cfg.Replicas))
}
