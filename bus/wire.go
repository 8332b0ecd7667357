package bus

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
)

// Stream and subject names of the public wire contract (see the README's
// "Wire contract" section). Any language can publish a job by sending its
// JSON arguments to JobSubject(queue, kind).
const (
	// JobsStream is the work-queue stream holding every ready, delayed and
	// periodic job.
	JobsStream = "JOBS"
	// DLQStream holds the dead letters: jobs that failed for good.
	DLQStream = "DLQ"
	// JobsPrefix starts every job subject: jobs.<queue>.<kind>.
	JobsPrefix = "jobs"
	// DLQPrefix starts every dead-letter subject: dlq.<queue>.<kind>.<id>.
	DLQPrefix = "dlq"
	// SchedulePrefix starts the scheduler's subjects inside JobsStream:
	// schedules.delay.<queue>.<id> for delayed jobs and
	// schedules.every.<name> for periodic ones.
	SchedulePrefix = "schedules"
)

// Headers of the wire contract. All are optional on a job.
const (
	// HeaderMsgID is JetStream's dedupe header; jetfleet uses it as the job ID.
	HeaderMsgID = "Nats-Msg-Id"
	// HeaderJobID carries the job ID where Nats-Msg-Id cannot: on delayed
	// jobs (the scheduler strips Nats-Msg-Id) and on retried dead letters.
	HeaderJobID = "Jetfleet-Job-Id"
	// HeaderTries is how many deliveries the job may use, an integer ≥ 1.
	HeaderTries = "Jetfleet-Tries"
	// HeaderTimeout bounds one attempt: a Go duration ("90s") or seconds ("90").
	HeaderTimeout = "Jetfleet-Timeout"
	// HeaderBackoff is the delay before each retry, comma separated
	// ("1s,10s,60s"); the last value repeats.
	HeaderBackoff = "Jetfleet-Backoff"

	// HeaderError is the failure reason on a dead letter (may be multi-line).
	HeaderError = "Jetfleet-Error"
	// HeaderAttempts is how many times the job ran before it was dead-lettered.
	HeaderAttempts = "Jetfleet-Attempts"
	// HeaderFailedAt is when the job was dead-lettered, RFC 3339 with nanoseconds.
	HeaderFailedAt = "Jetfleet-Failed-At"
	// HeaderOrigin is the job's place in JobsStream, "JOBS:<seq>".
	HeaderOrigin = "Jetfleet-Origin"
)

var nameRE = regexp.MustCompile(`^[a-z0-9_-]+$`)

// ValidateName checks a queue or kind name against the wire contract's
// [a-z0-9_-]+ rule. what is "queue" or "kind", for the error message.
func ValidateName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%w: %s name is empty", ErrInvalid, what)
	}
	if len(name) > 64 {
		return fmt.Errorf("%w: %s name %q is longer than 64 characters", ErrInvalid, what, name)
	}
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%w: %s name %q may only use a-z, 0-9, _ and -", ErrInvalid, what, name)
	}
	return nil
}

// JobSubject is the subject a job of kind is published to on queue.
func JobSubject(queue, kind string) string {
	return JobsPrefix + "." + queue + "." + kind
}

// QueueFilter is the subject filter of queue's consumer: jobs.<queue>.>.
func QueueFilter(queue string) string { return JobsPrefix + "." + queue + ".>" }

// ConsumerName is the durable consumer all workers of queue share.
func ConsumerName(queue string) string { return "q-" + queue }

// DLQSubject is where a dead job of queue and kind with id is kept. The ID
// is the last token so that one dead letter is found by subject, without a
// scan of the stream.
func DLQSubject(queue, kind, id string) string {
	return DLQPrefix + "." + queue + "." + kind + "." + IDToken(id)
}

// DLQFilterForID matches the dead letter of job id in any queue and kind.
func DLQFilterForID(id string) string { return DLQPrefix + ".*.*." + IDToken(id) }

// IDToken turns a job ID into one subject token: the ID itself when it is a
// valid token (no '.', '*', '>', spaces or control characters, at most 128
// bytes), else "h-" and a base64url SHA-256 of it.
func IDToken(id string) string {
	if id != "" && len(id) <= 128 && !strings.ContainsFunc(id, badTokenRune) {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "h-" + base64.RawURLEncoding.EncodeToString(sum[:18])
}

func badTokenRune(r rune) bool {
	return r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f
}

// ParseJobSubject splits jobs.<queue>.<kind> into queue and kind.
func ParseJobSubject(subject string) (queue, kind string, err error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 3 || parts[0] != JobsPrefix {
		return "", "", fmt.Errorf("%w: subject %q is not jobs.<queue>.<kind>", ErrInvalid, subject)
	}
	if err := ValidateName("queue", parts[1]); err != nil {
		return "", "", err
	}
	if err := ValidateName("kind", parts[2]); err != nil {
		return "", "", err
	}
	return parts[1], parts[2], nil
}
