// Package bus is jetfleet's job bus on NATS JetStream: the topology (the
// JOBS work-queue stream, one durable consumer per queue, the DLQ stream
// of dead letters), the names and the job envelope of the public wire
// contract, the Dispatcher that enqueues jobs from Go and registers
// periodic schedules, and the Inspector that operators use for failed
// jobs, statistics, the monitor and pausing queues. The workers package
// runs the jobs.
//
// Unique (with UniqueFor) stores at most one job per key, fleet-wide, with
// a KV Create in UniqueBucket; a held key is a *DuplicateError. Release
// stores a job again without using a try, for programs that run jobs
// themselves; LimitsBucket holds the slots of the workers' fleet-wide
// limits.
//
// A job is a message on jobs.<queue>.<kind> whose body is the job's
// arguments as JSON. Any language can enqueue one with a plain publish; the
// Jetfleet-* headers are optional. Delivery to workers is at least once, so
// handlers must be idempotent: use the job ID as the idempotency key.
//
// bus imports nats.go only, never nats-server.
package bus

import (
	"errors"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// ErrInvalid is wrapped by every error about bad input: a bad queue or kind
// name, a body that is not JSON, a body over the server's max payload, tries
// below 1. The message names the field and the rule.
var ErrInvalid = wire.ErrInvalid

// ErrFailedFull is wrapped by DeadLetter's error when the DLQ stream
// holds Config.FailedMaxBytes already and refused the letter. The job was
// not removed: hand it back (workers do, after its backoff) until dead
// letters are retried, removed or expire.
var ErrFailedFull = wire.ErrFailedFull

// ErrNotAcknowledged is wrapped when JetStream did not confirm that it
// stored a job. Such a job may or may not be stored; dispatching it again
// with the same ID is safe within the duplicate window. When no answer came
// in time, the message says what that can mean: a server that cannot write
// (its disk full) or a stream that lost its quorum.
var ErrNotAcknowledged = errors.New("job not acknowledged by JetStream")
