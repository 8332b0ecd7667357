package workers

import "strings"

// Outcome is what became of one delivery of a job, once settled with the
// server: an ack, nak or term sent (like nats.go's Ack, not confirmed one
// by one; Run flushes them before it returns), or a dead letter the DLQ
// stream acknowledged. Config.OnOutcome receives it, for metrics.
type Outcome string

// Outcomes reported to Config.OnOutcome.
const (
	// Succeeded: the handler returned nil and the job was acknowledged.
	Succeeded Outcome = "succeeded"
	// Retried: the attempt failed and the job will be delivered again
	// after its backoff.
	Retried Outcome = "retried"
	// DeadLettered: the job failed for good (tries used up, a permanent
	// error, no handler, malformed) and is stored in DLQ, its dead-letter
	// hooks have run, and the original is removed. A delivery whose hook
	// failed is not reported: the job comes back to run it again.
	DeadLettered Outcome = "dead_lettered"
	// HandedBack: a drain gave the job back to the queue unfinished.
	HandedBack Outcome = "handed_back"
	// Cancelled: the job was cancelled (bus.Inspector.Cancel) before or
	// while it ran; it is removed, not retried and not dead-lettered.
	Cancelled Outcome = "cancelled"
	// Released: the job was stored again to run later without using a
	// try: its handler returned Release, or a fleet-wide limit had no room
	// for it in the worker (Config.MaxWaiting) or the worker stopped.
	Released Outcome = "released"
)

// outcomes maps the settle outcomes of execute.go to the public ones; the
// others ("dead-letter failed": the job is delivered again) are not
// reported.
var outcomes = map[string]Outcome{
	"acked":         Succeeded,
	"retry":         Retried,
	"dead-lettered": DeadLettered,
	"terminated":    DeadLettered,
	"handed back":   HandedBack,
	"cancelled":     Cancelled,
	"released":      Released,
}

// settled returns what a run of the message on subject calls with each
// outcome settled with the server: the presence tally, then
// Config.OnOutcome.
func (l *loop) settled(subject string) func(outcome string) {
	count := l.tally.counter(subject)
	hook := l.w.cfg.OnOutcome
	if hook == nil {
		return count
	}
	queue, kind := subjectNames(subject)
	return func(outcome string) {
		count(outcome)
		if o, ok := outcomes[outcome]; ok {
			hook(queue, kind, o)
		}
	}
}

// subjectNames is the queue and kind of a job subject, jobs.<queue>.<kind>
// or jobs.<queue>.<kind>.<id> (the consumer's filter guarantees the shape;
// "" when it is not).
func subjectNames(subject string) (queue, kind string) {
	parts := strings.SplitN(subject, ".", 4)
	if len(parts) < 3 {
		return "", ""
	}
	return parts[1], parts[2]
}
