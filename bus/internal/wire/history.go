package wire

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The names of the job history and job control of the wire contract
// (bus exports them too).
const (
	historyStream = "JETFLEET_HISTORY"
	statusPrefix  = "jetfleet.status"
	tagsPrefix    = "jetfleet.tags"
	controlPrefix = "jetfleet.jobs"
	queueCancel   = "jetfleet.queues.cancel"
	headerTags    = "Jetfleet-Tags"
)

// Defaults of the history stream.
const (
	// DefaultCompletedRetention is how long finished jobs are kept, as
	// Laravel Horizon keeps completed jobs: one hour.
	DefaultCompletedRetention = time.Hour
	// DefaultHistoryMaxBytes bounds the history stream: 256 MiB, about
	// 700,000 jobs at 350 bytes a record.
	DefaultHistoryMaxBytes = 256 << 20
)

// Limits of tags.
const (
	// MaxTags is how many tags one job may carry.
	MaxTags = 8
	// MaxTagLen is the longest tag, in bytes.
	MaxTagLen = 64
)

// StatusSubject is where the record of job id of queue and kind is kept:
// jetfleet.status.<queue>.<kind>.<IDToken(id)>.
func StatusSubject(queue, kind, id string) string {
	return statusPrefix + "." + queue + "." + kind + "." + IDToken(id)
}

// StatusFilterForID matches the record of job id in any queue and kind.
func StatusFilterForID(id string) string { return statusPrefix + ".*.*." + IDToken(id) }

// StatusFilter matches the records of queue and kind ("" is any).
func StatusFilter(queue, kind string) string {
	if queue == "" && kind == "" {
		return statusPrefix + ".>"
	}
	return statusPrefix + "." + orStar(queue) + "." + orStar(kind) + ".*"
}

func orStar(name string) string {
	if name == "" {
		return "*"
	}
	return name
}

// TagSubject is the index entry of tag for job id:
// jetfleet.tags.<tag>.<IDToken(id)>. The tag must be valid (ValidateTags).
func TagSubject(tag, id string) string { return tagsPrefix + "." + tag + "." + IDToken(id) }

// TagFilter matches every index entry of tag.
func TagFilter(tag string) string { return tagsPrefix + "." + tag + ".*" }

// CancelSubject is the core NATS subject that asks the worker running job
// id to cancel it: jetfleet.jobs.cancel.<IDToken(id)>.
func CancelSubject(id string) string { return controlPrefix + ".cancel." + IDToken(id) }

// LocateSubject is the core NATS subject the worker running job id
// answers with its running record: jetfleet.jobs.locate.<IDToken(id)>.
func LocateSubject(id string) string { return controlPrefix + ".locate." + IDToken(id) }

// RunningSubject is the core NATS subject every worker answers with the
// records of the jobs it runs.
const RunningSubject = controlPrefix + ".running"

// ControlFilter matches every job control subject workers listen on.
const ControlFilter = controlPrefix + ".>"

// QueueCancelSubject is the core NATS subject that asks every worker to
// cancel queue's jobs stored up to a sequence: jetfleet.queues.cancel.<queue>.
func QueueCancelSubject(queue string) string { return queueCancel + "." + queue }

// QueueCancelFilter matches QueueCancelSubject of every queue.
const QueueCancelFilter = queueCancel + ".*"

// HistoryStreamConfig is the history stream (bus.HistoryStream) as t
// describes it: limits retention, one message per subject (a job's latest
// record replaces the one before), CompletedRetention as MaxAge and
// HistoryMaxBytes as MaxBytes, discarding the oldest records first.
//
// On a standalone server it uses the asynchronous persist mode
// (nats-server 2.12+, file storage, one replica): the server batches its
// writes to disk instead of one write per record, which is most of what a
// record costs; a server crash may lose the last records, never a job.
// Replicated streams flush asynchronously anyway (the Raft log holds the
// writes). In a cluster a stream of one replica keeps the default mode,
// since JetStream cannot change the mode in place and it may be scaled up.
func HistoryStreamConfig(t Topology) jetstream.StreamConfig {
	t = t.withDefaults()
	persist := jetstream.DefaultPersistMode
	if t.Replicas == 1 && !t.MemoryStorage && !t.Clustered {
		persist = jetstream.AsyncPersistMode
	}
	return jetstream.StreamConfig{
		PersistMode:       persist,
		Name:              historyStream,
		Description:       "jetfleet job history: jetfleet.status.<queue>.<kind>.<job id> (the latest record of each job) and jetfleet.tags.<tag>.<job id>",
		Subjects:          []string{statusPrefix + ".>", tagsPrefix + ".>"},
		Retention:         jetstream.LimitsPolicy,
		Storage:           t.storage(),
		Replicas:          t.Replicas,
		MaxAge:            t.CompletedRetention,
		MaxBytes:          t.HistoryMaxBytes,
		MaxMsgsPerSubject: 1,
		Discard:           jetstream.DiscardOld,
		Duplicates:        min(t.DuplicateWindow, t.CompletedRetention),
		AllowDirect:       true,
	}
}

// ValidateTags checks a job's tags: at most MaxTags, each 1 to MaxTagLen
// bytes of printable ASCII without space, '.', '*', '>' or ','. It returns
// them without duplicates, in their order.
func ValidateTags(tags []string) ([]string, error) {
	var out []string
	for _, tag := range tags {
		if err := ValidateTag(tag); err != nil {
			return nil, err
		}
		dup := false
		for _, t := range out {
			dup = dup || t == tag
		}
		if !dup {
			out = append(out, tag)
		}
	}
	if len(out) > MaxTags {
		return nil, fmt.Errorf("%w: %d tags; a job may carry at most %d", ErrInvalid, len(out), MaxTags)
	}
	return out, nil
}

// ValidateTag checks one tag against the rule: 1 to MaxTagLen bytes of
// printable ASCII without spaces, '.', '*', '>' and ','. The error wraps
// ErrInvalid.
func ValidateTag(tag string) error {
	if tag == "" {
		return fmt.Errorf("%w: a tag is empty", ErrInvalid)
	}
	if len(tag) > MaxTagLen {
		return fmt.Errorf("%w: tag %q is %d bytes; the limit is %d", ErrInvalid, tag, len(tag), MaxTagLen)
	}
	for i := 0; i < len(tag); i++ {
		c := tag[i]
		if c <= ' ' || c >= 0x7f || c == '.' || c == '*' || c == '>' || c == ',' {
			return fmt.Errorf("%w: tag %q may only use printable ASCII without spaces, '.', '*', '>' and ','", ErrInvalid, tag)
		}
	}
	return nil
}
