// Package wire holds the helpers of jetfleet's wire contract that only the
// module itself needs: subject and consumer names, header encodings, the
// stream, consumer and bucket configurations, bucket creation, the raw
// JetStream API prefix and dead-lettering. bus, workers, the command and
// tests build on it; users see the contract through bus's exported
// constants, types and calls.
//
// wire must not import bus (bus imports wire). The names of the contract
// that both need (stream names, subject prefixes, header names, bucket
// names) are exported by bus for users and repeated here unexported; the
// tests of this package check that both agree.
package wire

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// The names of the wire contract wire uses. bus exports each under the
// same name, capitalised, with its documentation; they must agree.
const (
	jobsStream     = "JOBS"
	dlqStream      = "DLQ"
	jobsPrefix     = "jobs"
	dlqPrefix      = "dlq"
	schedulePrefix = "schedules"
	batchPrefix    = "batches"

	headerMsgID    = "Nats-Msg-Id"
	headerJobID    = "Jetfleet-Job-Id"
	headerError    = "Jetfleet-Error"
	headerAttempts = "Jetfleet-Attempts"
	headerFailedAt = "Jetfleet-Failed-At"
	headerOrigin   = "Jetfleet-Origin"
	// HeaderBodyOmitted is on a dead letter that could not keep its job's
	// body: the body's size in bytes.
	HeaderBodyOmitted = "Jetfleet-Body-Omitted"
	// HeaderHeadersOmitted is on a dead letter that could not keep some
	// of its job's headers: their names and sizes.
	HeaderHeadersOmitted = "Jetfleet-Headers-Omitted"

	pauseBucket     = "jetfleet_queues"
	workersBucket   = "jetfleet_workers"
	workerRecordTTL = 30 * time.Second
)

// MaxPresenceInterval is the longest interval between a worker's record
// writes in the workers bucket that keeps a live worker's record inside
// its 30 s expiry (bus.WorkerRecordTTL) with room for two missed writes.
const MaxPresenceInterval = 10 * time.Second

// ErrInvalid is wrapped by every error about bad input. bus exports it as
// bus.ErrInvalid; it lives here so that the checks of this package wrap the
// very value callers of bus compare with errors.Is.
var ErrInvalid = errors.New("invalid job")

// validNameChars reports whether name uses only [a-z0-9_-]: a loop, not a
// regexp, since every delivered job's subject is checked.
func validNameChars(name string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ValidateName checks a queue, kind or schedule name against the wire
// contract's rule: [a-z0-9_-]+, at most 64 characters. what is "queue",
// "kind" or "schedule", for the error message, which wraps ErrInvalid.
func ValidateName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%w: %s name is empty", ErrInvalid, what)
	}
	if len(name) > 64 {
		return fmt.Errorf("%w: %s name %q is longer than 64 characters", ErrInvalid, what, name)
	}
	if !validNameChars(name) {
		return fmt.Errorf("%w: %s name %q may only use a-z, 0-9, _ and -", ErrInvalid, what, name)
	}
	return nil
}

// ValidateJobID checks a job ID against the wire contract's rule: UTF-8
// with no control character (Unicode category Cc: U+0000 to U+001F,
// U+007F to U+009F). Such an ID cannot be printed, typed back or stored
// faithfully (NATS turns a line break in a header into a space; JSON
// records turn a byte that is not UTF-8 into U+FFFD, so a lookup by the
// ID would not find its record). The error wraps ErrInvalid.
func ValidateJobID(id string) error {
	if !utf8.ValidString(id) {
		i := 0
		for i < len(id) {
			r, size := utf8.DecodeRuneInString(id[i:])
			if r == utf8.RuneError && size == 1 {
				break
			}
			i += size
		}
		return fmt.Errorf("%w: job ID %q is not UTF-8 (byte %d); a job ID must be", ErrInvalid, id, i)
	}
	i := strings.IndexFunc(id, unicode.IsControl)
	if i < 0 {
		return nil
	}
	r := []rune(id[i:])[0]
	return fmt.Errorf("%w: job ID %q holds the control character %U at byte %d; a job ID may hold no control character", ErrInvalid, id, r, i)
}

// JobSubject is the subject a job of kind is published to on queue:
// jobs.<queue>.<kind>. Jobs published there are found by ID only once a
// worker runs them; JobIDSubject makes a waiting job findable too.
func JobSubject(queue, kind string) string {
	return jobsPrefix + "." + queue + "." + kind
}

// JobIDSubject is the subject of the job id of kind on queue, as bus
// publishes it: jobs.<queue>.<kind>.<IDToken(id)>. With the ID as the last
// token a waiting job is found, and removed, by subject, without a scan.
func JobIDSubject(queue, kind, id string) string {
	return jobsPrefix + "." + queue + "." + kind + "." + IDToken(id)
}

// JobFilterForID matches the job id in JOBS, in any queue and kind:
// jobs.*.*.<IDToken(id)>.
func JobFilterForID(id string) string { return jobsPrefix + ".*.*." + IDToken(id) }

// DelayFilterForID matches the delayed job id in any queue:
// schedules.delay.*.<IDToken(id)>.
func DelayFilterForID(id string) string { return schedulePrefix + ".delay.*." + IDToken(id) }

// QueueFilter is the subject filter of queue's consumer: jobs.<queue>.>.
func QueueFilter(queue string) string { return jobsPrefix + "." + queue + ".>" }

// ConsumerPrefix starts the name of every queue's durable consumer on JOBS.
const ConsumerPrefix = "q-"

// ConsumerName is the durable consumer all workers of queue share: q-<queue>.
func ConsumerName(queue string) string { return ConsumerPrefix + queue }

// DLQSubject is where a dead job of queue and kind with id is kept:
// dlq.<queue>.<kind>.<IDToken(id)>. The ID is the last token so that one
// dead letter is found by subject, without a scan of the stream.
func DLQSubject(queue, kind, id string) string {
	return dlqPrefix + "." + queue + "." + kind + "." + IDToken(id)
}

// DLQFilterForID matches the dead letter of job id in any queue and kind.
func DLQFilterForID(id string) string { return dlqPrefix + ".*.*." + IDToken(id) }

// DelaySubject is where a job of queue with id waits for its time:
// schedules.delay.<queue>.<IDToken(id)>.
func DelaySubject(queue, id string) string {
	return schedulePrefix + ".delay." + queue + "." + IDToken(id)
}

// IDToken turns a job ID into one subject token: the ID itself when it is a
// valid token (no '.', '*', '>', spaces or control characters, at most 128
// bytes), else "h-" and the base64url of the first 18 bytes of its SHA-256.
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

// ParseJobSubject splits jobs.<queue>.<kind> or jobs.<queue>.<kind>.<id
// token> into queue and kind. A subject of another shape or with an
// invalid name is an error wrapping ErrInvalid.
func ParseJobSubject(subject string) (queue, kind string, err error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 3 && (len(parts) != 4 || parts[3] == "") || parts[0] != jobsPrefix {
		return "", "", fmt.Errorf("%w: subject %q is not jobs.<queue>.<kind> or jobs.<queue>.<kind>.<id>", ErrInvalid, subject)
	}
	if err := ValidateName("queue", parts[1]); err != nil {
		return "", "", err
	}
	if err := ValidateName("kind", parts[2]); err != nil {
		return "", "", err
	}
	return parts[1], parts[2], nil
}

// RetryMsgID is the dedupe ID (Nats-Msg-Id) of the job a retry of the dead
// letter at DLQ sequence dlqSeq publishes. It is the same on every retry of
// that dead letter, so a retry that stopped after publishing and is run
// again stores the job once, within JOBS' duplicate window.
func RetryMsgID(id string, dlqSeq uint64) string {
	return id + ":retry:" + strconv.FormatUint(dlqSeq, 10)
}
