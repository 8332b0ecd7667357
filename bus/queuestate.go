package bus

import "time"

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
	// Waiting counts, per queue and kind, the jobs this process holds
	// that wait for a concurrency slot or a rate token (fleet-wide limits).
	Waiting map[string]map[string]int `json:"waiting,omitempty"`
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
