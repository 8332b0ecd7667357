package wire

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/settle"
)

// Topology is the part of bus.Config that shapes the streams and the
// queues' consumers. A zero field means bus.Config's documented default;
// the defaults are applied here, in one place.
type Topology struct {
	// Replicas of JOBS and DLQ (and their consumers). Default 1.
	Replicas int
	// MemoryStorage keeps JOBS and DLQ in memory. Default false.
	MemoryStorage bool
	// DuplicateWindow is JOBS' dedupe window. Default 2 minutes.
	DuplicateWindow time.Duration
	// FailedRetention is DLQ's MaxAge. Default 7 days.
	FailedRetention time.Duration
	// FailedMaxBytes is DLQ's MaxBytes; -1 means no bound. Default
	// DefaultFailedMaxBytes.
	FailedMaxBytes int64
	// AckWait is the queue consumers' AckWait. Default 30 seconds.
	AckWait time.Duration
	// CompletedRetention is the history stream's MaxAge. Default 1 hour.
	CompletedRetention time.Duration
	// HistoryMaxBytes is the history stream's MaxBytes. Default 256 MiB.
	HistoryMaxBytes int64
	// Clustered says the server is part of a cluster, where a stream of
	// one replica may later be scaled up.
	Clustered bool
}

func (t Topology) withDefaults() Topology {
	t.Replicas = replicas(t.Replicas)
	if t.DuplicateWindow <= 0 {
		t.DuplicateWindow = 2 * time.Minute
	}
	if t.FailedRetention <= 0 {
		t.FailedRetention = 7 * 24 * time.Hour
	}
	if t.AckWait <= 0 {
		t.AckWait = 30 * time.Second
	}
	if t.FailedMaxBytes == 0 {
		t.FailedMaxBytes = DefaultFailedMaxBytes
	}
	if t.CompletedRetention <= 0 {
		t.CompletedRetention = DefaultCompletedRetention
	}
	if t.HistoryMaxBytes <= 0 {
		t.HistoryMaxBytes = DefaultHistoryMaxBytes
	}
	return t
}

func replicas(n int) int { return max(n, 1) }

func (t Topology) storage() jetstream.StorageType {
	if t.MemoryStorage {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// JobsStreamConfig is the JOBS stream as t describes it: a work queue on
// jobs.>, schedules.> and batches.>, with JetStream's message scheduler,
// rollups, atomic batch publish and per-message TTLs.
func JobsStreamConfig(t Topology) jetstream.StreamConfig {
	t = t.withDefaults()
	return jetstream.StreamConfig{
		Name:              jobsStream,
		Description:       "jetfleet jobs: jobs.<queue>.<kind>; delayed and periodic jobs under schedules.>; batches' state under batches.>",
		Subjects:          []string{jobsPrefix + ".>", schedulePrefix + ".>", batchPrefix + ".>"},
		Retention:         jetstream.WorkQueuePolicy,
		Storage:           t.storage(),
		Replicas:          t.Replicas,
		Duplicates:        t.DuplicateWindow,
		AllowMsgSchedules: true,
		AllowRollup:       true,
		AllowDirect:       true,
		// Batches: their jobs and state are stored together or not at
		// all, and their state expires (Nats-TTL).
		AllowAtomicPublish: true,
		AllowMsgTTL:        true,
	}
}

// DefaultFailedMaxBytes bounds the DLQ stream: 256 MiB.
const DefaultFailedMaxBytes = 256 << 20

// DLQStreamConfig is the DLQ stream as t describes it: limits retention
// with FailedRetention as MaxAge and FailedMaxBytes as MaxBytes. A full
// DLQ refuses new letters (discard new) rather than drop old ones: a
// refused letter leaves its job in JOBS, so no accepted job is lost.
func DLQStreamConfig(t Topology) jetstream.StreamConfig {
	t = t.withDefaults()
	return jetstream.StreamConfig{
		Name:        dlqStream,
		Description: "jetfleet dead letters: dlq.<queue>.<kind>.<job id>",
		Subjects:    []string{dlqPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Storage:     t.storage(),
		Replicas:    t.Replicas,
		Duplicates:  min(t.DuplicateWindow, t.FailedRetention),
		MaxAge:      t.FailedRetention,
		MaxBytes:    t.FailedMaxBytes,
		Discard:     jetstream.DiscardNew,
		AllowDirect: true,
	}
}

// QueueConsumerConfig is the durable pull consumer shared by all workers of
// queue. MaxDeliver is unlimited on purpose: workers compare each delivery
// count with the job's own tries and dead-letter a job that has used them
// all, even when the worker of its last attempt was killed (see DESIGN.md).
// Its replica count follows the stream's.
func QueueConsumerConfig(t Topology, queue string) jetstream.ConsumerConfig {
	t = t.withDefaults()
	return jetstream.ConsumerConfig{
		Durable:       ConsumerName(queue),
		Description:   "jetfleet workers of queue " + queue,
		FilterSubject: QueueFilter(queue),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       t.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: 100_000,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		// Replicas 0: the consumer has as many replicas as the stream.
	}
}

// PauseBucketConfig is the pause bucket (bus.PauseBucket) with n replicas
// (at least 1): file storage, so a pause survives restarts, and one value
// per key.
func PauseBucketConfig(n int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      pauseBucket,
		Description: "jetfleet paused queues: key = queue, value \"paused\"",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas(n),
	}
}

// WorkersBucketConfig is the workers bucket (bus.WorkersBucket) with n
// replicas (at least 1): in memory, since it is rewritten every few
// seconds, with bus.WorkerRecordTTL as MaxAge.
func WorkersBucketConfig(n int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      workersBucket,
		Description: "jetfleet worker processes and their job counts, one key per process",
		History:     1,
		TTL:         workerRecordTTL,
		Storage:     jetstream.MemoryStorage,
		Replicas:    replicas(n),
	}
}

// EnsureBucket returns the bucket kc names, creating it from kc when it is
// missing. An existing bucket is used as it is, never updated, so an
// operator's settings survive (as bus.EnsureQueues does for streams). A
// cluster's "insufficient resources" (503), answered for a moment after it
// forms, is retried as UntilSettled does.
func EnsureBucket(ctx context.Context, js jetstream.JetStream, kc jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := UntilSettled(ctx, func() error {
		var err error
		if kv, err = js.KeyValue(ctx, kc.Bucket); !errors.Is(err, jetstream.ErrBucketNotFound) {
			return err
		}
		kv, err = js.CreateKeyValue(ctx, kc)
		if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return ErrRetry // another process created it in between: look it up again
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bus: bucket %s: %w", kc.Bucket, err)
	}
	return kv, nil
}

// settleTime bounds how long UntilSettled retries the answers a JetStream
// cluster gives while it settles: "insufficient resources" (503) for about
// a second after a stream is created or scaled or the cluster forms, and
// races with other processes provisioning the same thing.
const settleTime = 30 * time.Second

// ErrRetry marks a concurrent change by another process; an operation run
// by UntilSettled returns it to be tried again.
var ErrRetry = errors.New("bus: concurrent change, retry")

func retryable(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, ErrRetry) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.As(err, &apiErr) && apiErr.Code == 503 ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		settle.NoPeerYet(err)
}

// UntilSettled runs op until it succeeds, fails with an error other than
// ErrRetry, a missing stream, a 503, an API request that timed out (a
// busy server, a cluster electing its leaders) or a placement refused for
// a peer not heard from yet (settle.NoPeerYet), ctx ends, or 30 seconds
// pass.
func UntilSettled(ctx context.Context, op func() error) error {
	deadline := time.Now().Add(settleTime)
	wait := 50 * time.Millisecond
	for {
		err := op()
		if err == nil || !retryable(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// APIPrefix is the JetStream API prefix js uses ("$JS.API." by default,
// "$JS.<domain>.API." with a domain), for API calls nats.go does not wrap.
func APIPrefix(js jetstream.JetStream) string {
	o := js.Options()
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	default:
		return jetstream.DefaultAPIPrefix
	}
}
