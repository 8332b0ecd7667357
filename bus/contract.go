package bus

// Stream and subject names of the public wire contract
// (docs/wire-contract.md). Any language can publish a job by sending its
// JSON arguments to jobs.<queue>.<kind>; queue and kind names use
// [a-z0-9_-] only and are at most 64 characters long. All workers of a
// queue share one durable pull consumer on JobsStream, named q-<queue>.
const (
	// JobsStream is the work-queue stream holding every ready, delayed and
	// periodic job.
	JobsStream = "JOBS"
	// DLQStream holds the dead letters: jobs that failed for good.
	DLQStream = "DLQ"
	// JobsPrefix starts every job subject: jobs.<queue>.<kind>.
	JobsPrefix = "jobs"
	// DLQPrefix starts every dead-letter subject: dlq.<queue>.<kind>.<id>.
	// An ID that is not a valid subject token (empty, over 128 bytes, or
	// holding '.', '*', '>', a space or a control character) is written as
	// "h-" and the base64url (unpadded) of the first 18 bytes of its
	// SHA-256; the full ID is in HeaderJobID.
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

	// HeaderError is the failure reason on a dead letter, on one line: a
	// line break is written as the two characters \n and a backslash as
	// \\; a reason too long for the message is cut, ending in
	// " …[truncated]".
	HeaderError = "Jetfleet-Error"
	// HeaderAttempts is how many times the job ran before it was dead-lettered.
	HeaderAttempts = "Jetfleet-Attempts"
	// HeaderFailedAt is when the job was dead-lettered, RFC 3339 with nanoseconds.
	HeaderFailedAt = "Jetfleet-Failed-At"
	// HeaderOrigin is the job's place in JobsStream, "JOBS:<seq>".
	HeaderOrigin = "Jetfleet-Origin"
	// HeaderBodyOmitted is on a dead letter that could not keep its job's
	// body (a job published within a few hundred bytes of max_payload):
	// the body's size in bytes. Such a letter cannot be retried.
	HeaderBodyOmitted = "Jetfleet-Body-Omitted"
	// HeaderHeadersOmitted is on a dead letter that could not keep some of
	// its job's headers (a job published with headers near JetStream's
	// 64 KiB limit): "Name (n bytes), ...". Such a letter cannot be
	// retried either.
	HeaderHeadersOmitted = "Jetfleet-Headers-Omitted"
)
