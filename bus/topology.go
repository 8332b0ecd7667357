package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// Config holds the settings of the jetfleet topology and the dispatcher. Every
// zero value means the documented default, so Config{} is a working setup.
type Config struct {
	// Replicas is the replica count of JOBS and DLQ: 1 on a single node, 3
	// in a three-node cluster. Default 1.
	Replicas int
	// MemoryStorage keeps JOBS and DLQ in memory instead of files: faster,
	// but a server restart loses every job. Default false (file storage).
	MemoryStorage bool
	// DuplicateWindow is how long a job ID (Nats-Msg-Id) is remembered for
	// dedupe. Default 2 minutes.
	DuplicateWindow time.Duration
	// FailedRetention is how long dead letters are kept, enforced by the DLQ
	// stream's MaxAge (Laravel prunes failed jobs after 7 days). Default 7 days.
	FailedRetention time.Duration
	// FailedMaxBytes bounds the DLQ stream in bytes; -1 means no bound.
	// A full DLQ refuses new dead letters (ErrFailedFull) rather than drop
	// old ones, so the jobs they were for stay queued: nothing accepted is
	// lost. Default 256 MiB.
	FailedMaxBytes int64
	// AckWait is how long a worker owns a delivered job before the server
	// delivers it again; workers extend it with heartbeats while a job
	// runs. Default 30 seconds.
	AckWait time.Duration
	// DefaultQueue is where Dispatch puts jobs without OnQueue. Default "default".
	DefaultQueue string
	// CompletedRetention is how long the history keeps finished jobs
	// (succeeded, cancelled) and every other record: the MaxAge of
	// HistoryStream (Laravel Horizon keeps completed jobs an hour). Dead
	// letters stay in DLQ for FailedRetention. Default 1 hour.
	CompletedRetention time.Duration
	// HistoryMaxBytes bounds HistoryStream in bytes; past it the oldest
	// records go first. Default 256 MiB (about 700,000 jobs).
	HistoryMaxBytes int64
	// NoHistory turns the job history off: workers write no records, the
	// Dispatcher indexes no tags, and HistoryStream is not created. Jobs
	// waiting, delayed, running and dead are still found by ID; finished
	// ones are not. Default false: history on.
	NoHistory bool
	// OnDispatched, when set, is called by a Dispatcher once for every job
	// JetStream acknowledged storing (Dispatch, DispatchJSON and each stored
	// job of DispatchMany; not Schedule), with the job's queue and kind, for
	// metrics. It must be quick and safe for concurrent use. Default: nil.
	OnDispatched func(queue, kind string)
	// TracerProvider starts the spans of dispatches and schedules and the
	// traceparent they write into jobs (bus/trace.go). Default: the
	// OpenTelemetry global provider, a no-op unless the program sets one;
	// with a no-op provider a dispatch starts no span and only passes on
	// the caller's trace.
	TracerProvider trace.TracerProvider
	// HeadersFromContext are called, in order, for every job a Dispatcher
	// builds (Dispatch, DispatchJSON, DispatchMany, Prepare, batches and
	// chains), with the dispatch's context, to add headers taken from it:
	// readmodel.JobHeaders adds the causal token of the request's writes
	// (HeaderCausalToken), and a tracer may add its trace context. They
	// must not set Nats-* headers or the job's own settings, and must be
	// quick and safe for concurrent use. Default: none.
	HeadersFromContext []func(ctx context.Context, h nats.Header)
	// BatchRetention is how long the state of a batch or chain is kept in
	// JOBS after its last change (each state message's Nats-TTL): the
	// longest a batch may run, and how long a finished one stays visible
	// to `jetfleet queue batch`. Default 7 days.
	BatchRetention time.Duration
}

func (c Config) withDefaults() Config {
	if c.DefaultQueue == "" {
		c.DefaultQueue = "default"
	}
	if c.BatchRetention <= 0 {
		c.BatchRetention = 7 * 24 * time.Hour
	}
	return c
}

// topology is the part of c that shapes streams, consumers and buckets;
// wire applies the defaults documented above.
func (c Config) topology() wire.Topology {
	return wire.Topology{
		Replicas:        c.Replicas,
		MemoryStorage:   c.MemoryStorage,
		DuplicateWindow: c.DuplicateWindow,
		FailedRetention: c.FailedRetention,
		FailedMaxBytes:  c.FailedMaxBytes,
		AckWait:         c.AckWait,

		CompletedRetention: c.CompletedRetention,
		HistoryMaxBytes:    c.HistoryMaxBytes,
	}
}

// streams are the stream configurations c provisions on the server js
// is connected to: JOBS, DLQ and, unless NoHistory, HistoryStream.
func (c Config) streams(js jetstream.JetStream) []jetstream.StreamConfig {
	t := c.topology()
	t.Clustered = js.Conn().ConnectedClusterName() != ""
	out := []jetstream.StreamConfig{wire.JobsStreamConfig(t), wire.DLQStreamConfig(t)}
	if !c.NoHistory {
		out = append(out, wire.HistoryStreamConfig(t))
	}
	return out
}

// Provision creates or updates the JOBS, DLQ and HistoryStream streams
// (not HistoryStream with NoHistory). It is idempotent and
// safe when many processes run it at once against an empty server; a
// changed setting updates the stream in place. Settings JetStream cannot
// change in place (storage type) are reported as an error naming them.
func Provision(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	for _, sc := range cfg.streams(js) {
		if err := ensureStream(ctx, js, sc); err != nil {
			return err
		}
	}
	return nil
}

// ProvisionQueues runs Provision and then EnsureQueues.
func ProvisionQueues(ctx context.Context, js jetstream.JetStream, cfg Config, queues ...string) error {
	if err := Provision(ctx, js, cfg); err != nil {
		return err
	}
	return EnsureQueues(ctx, js, cfg, queues...)
}

// EnsureQueues creates the JOBS, DLQ and HistoryStream streams (not
// HistoryStream with NoHistory) when they are missing, but
// never changes existing ones (so a worker started with default settings
// cannot undo an operator's R3 topology), then creates or updates each
// queue's consumer. It is what a process that uses the topology without
// owning its settings calls at start (workers do; so may a service that
// dispatches before any worker ran); the deployment step that owns the
// settings calls ProvisionQueues.
func EnsureQueues(ctx context.Context, js jetstream.JetStream, cfg Config, queues ...string) error {
	for _, sc := range cfg.streams(js) {
		missing := false
		err := wire.UntilSettled(ctx, func() error { // a lookup that timed out is made again
			_, err := js.Stream(ctx, sc.Name)
			missing = errors.Is(err, jetstream.ErrStreamNotFound)
			if missing {
				return nil
			}
			return err
		})
		if err == nil && missing {
			err = ensureStream(ctx, js, sc)
		}
		if err != nil {
			return fmt.Errorf("bus: stream %s: %w", sc.Name, err)
		}
	}
	for _, q := range queues {
		if err := wire.ValidateName("queue", q); err != nil {
			return err
		}
		if err := ensureConsumer(ctx, js, wire.QueueConsumerConfig(cfg.topology(), q)); err != nil {
			return err
		}
	}
	return nil
}

// ensureConsumer creates or updates a queue's consumer, retrying while a
// cluster settles (wire.UntilSettled).
func ensureConsumer(ctx context.Context, js jetstream.JetStream, cc jetstream.ConsumerConfig) error {
	err := wire.UntilSettled(ctx, func() error {
		_, err := js.CreateOrUpdateConsumer(ctx, JobsStream, cc)
		return err
	})
	if err != nil {
		return fmt.Errorf("bus: consumer %s on %s: %w", cc.Durable, JobsStream, err)
	}
	return nil
}

func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) error {
	return wire.UntilSettled(ctx, func() error { return tryEnsureStream(ctx, js, want) })
}

func tryEnsureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig) error {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return wire.ErrRetry
		}
		if err != nil {
			return fmt.Errorf("bus: create stream %s: %w", want.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("bus: stream %s: %w", want.Name, err)
	}
	have := s.CachedInfo().Config
	if have.PersistMode != want.PersistMode {
		// JetStream cannot change the persist mode in place: keep the
		// stream's, unless it is the asynchronous one, which replicated
		// streams cannot use.
		if want.Replicas > 1 && have.PersistMode == jetstream.AsyncPersistMode {
			return fmt.Errorf("bus: stream %s was created on a standalone server with the asynchronous persist mode, which a stream of %d replicas cannot use, and JetStream cannot change it in place (delete the stream: it holds only the job history, and the next start creates it again)", want.Name, want.Replicas)
		}
		want.PersistMode = have.PersistMode
	}
	if streamMatches(have, want) {
		return nil
	}
	if have.Storage != want.Storage {
		return fmt.Errorf("bus: stream %s uses %s storage but the settings ask for %s; JetStream cannot change it in place (back up and delete the stream, or change the setting back)", want.Name, have.Storage, want.Storage)
	}
	if _, err := js.UpdateStream(ctx, want); err != nil {
		return fmt.Errorf("bus: update stream %s: %w", want.Name, err)
	}
	return nil
}

// streamMatches reports whether have already holds every setting jetfleet
// manages, so a no-op start does not issue an update.
func streamMatches(have, want jetstream.StreamConfig) bool {
	return have.Retention == want.Retention &&
		have.Storage == want.Storage &&
		have.Replicas == want.Replicas &&
		have.Duplicates == want.Duplicates &&
		have.MaxAge == want.MaxAge &&
		have.AllowMsgSchedules == want.AllowMsgSchedules &&
		have.AllowRollup == want.AllowRollup &&
		have.AllowDirect == want.AllowDirect &&
		limitEqual(have.MaxBytes, want.MaxBytes) &&
		limitEqual(have.MaxMsgsPerSubject, want.MaxMsgsPerSubject) &&
		have.Discard == want.Discard &&
		have.PersistMode == want.PersistMode &&
		have.AllowAtomicPublish == want.AllowAtomicPublish &&
		have.AllowMsgTTL == want.AllowMsgTTL &&
		slices.Equal(have.Subjects, want.Subjects)
}

// limitEqual compares two stream limits, where 0 and -1 both mean none.
func limitEqual(a, b int64) bool { return max(a, 0) == max(b, 0) }
