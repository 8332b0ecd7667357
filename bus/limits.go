package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// Fleet-wide limits live in LimitsBucket as slots: a concurrency cap of n
// is n slot keys, each held by one running job under a lease its worker
// renews; a rate limit of n per period is n slot keys, each taken by one
// start and free again a period later. The workers package takes and
// frees them; the names and the value are part of the wire contract so
// that `nats kv ls jetfleet_limits` explains what runs.

const (
	// LimitsBucket holds the slots of concurrency caps
	// (c.<kind>.<key>.<i>) and rate limits (r.<kind>.<key>.<i>), i from 0
	// to n-1, each a LimitSlot as JSON written with a per-key TTL a second
	// past its Until. <key> is the KeyToken of the key a job's kind
	// derives (MaxConcurrentBy, RateLimitBy), or "=" for the whole kind.
	LimitsBucket = "jetfleet_limits"
	// WholeKind is the key token of a limit on a whole kind.
	WholeKind = "="
)

// LimitSlot is the value of one slot key in LimitsBucket.
type LimitSlot struct {
	// Until is when the slot is free again unless renewed: the end of a
	// cap's lease, or the end of a rate token's period.
	Until time.Time `json:"until"`
	// Worker is the worker process that took it (its presence key).
	Worker string `json:"worker"`
	// JobID is the job it was taken for.
	JobID string `json:"job_id,omitempty"`
}

// LimitSlotKey is the key of slot i of a concurrency cap (cap true) or
// rate limit of kind, for jobs whose derived key has token (WholeKind for
// the whole kind): c.<kind>.<token>.<i> or r.<kind>.<token>.<i>.
func LimitSlotKey(cap bool, kind, token string, i int) string {
	return LimitPrefix(cap, kind) + "." + token + "." + strconv.Itoa(i)
}

// LimitPrefix is the prefix of every slot key of kind's concurrency cap
// (cap true) or rate limit: c.<kind> or r.<kind>.
func LimitPrefix(cap bool, kind string) string {
	if cap {
		return "c." + kind
	}
	return "r." + kind
}

// OpenLimitsBucket returns LimitsBucket, creating it as cfg says when it
// is missing (an existing bucket is used as it is).
func OpenLimitsBucket(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.KeyValue, error) {
	return wire.EnsureBucket(ctx, js, wire.LimitsBucketConfig(cfg.Replicas))
}

// ClaimLimitSlot writes slot to key of LimitsBucket if the key's last
// revision is rev (0: the key has no message), with a TTL a second past
// slot.Until, and returns the new revision. Another writer first is an
// error wrapping jetstream.ErrKeyExists.
func ClaimLimitSlot(ctx context.Context, js jetstream.JetStream, key string, rev uint64, slot LimitSlot) (uint64, error) {
	value, err := json.Marshal(slot)
	if err != nil {
		return 0, err
	}
	rev, err = wire.PutIfRevision(ctx, js, LimitsBucket, key, value, rev, time.Until(slot.Until)+time.Second)
	if err != nil {
		return 0, fmt.Errorf("bus: limit slot %s: %w", key, err)
	}
	return rev, nil
}

// FreeLimitSlot removes key from LimitsBucket if its last revision is rev
// and returns the revision of the marker it leaves. Another writer first
// is an error wrapping jetstream.ErrKeyExists.
func FreeLimitSlot(ctx context.Context, js jetstream.JetStream, key string, rev uint64) (uint64, error) {
	rev, err := wire.PurgeIfRevision(ctx, js, LimitsBucket, key, rev)
	if err != nil {
		return 0, fmt.Errorf("bus: limit slot %s: %w", key, err)
	}
	return rev, nil
}

// addWaiting adds one worker's jobs waiting for a limit, by kind, to qs.
func addWaiting(qs *QueueStats, byKind map[string]int) {
	for kind, n := range byKind {
		if n <= 0 {
			continue
		}
		if qs.WaitingKinds == nil {
			qs.WaitingKinds = map[string]uint64{}
		}
		qs.WaitingKinds[kind] += uint64(n)
		qs.Waiting += uint64(n)
	}
}

// ReadLimitSlot reads key of LimitsBucket from the bucket's leader: its
// last revision (0 when the key has no message) and its value (nil when it
// was freed or expired).
func ReadLimitSlot(ctx context.Context, js jetstream.JetStream, key string) (uint64, *LimitSlot, error) {
	e, err := wire.GetLatest(ctx, js, LimitsBucket, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, err
	}
	if e.Deleted {
		return e.Revision, nil, nil
	}
	var slot LimitSlot
	if err := json.Unmarshal(e.Value, &slot); err != nil {
		return e.Revision, nil, fmt.Errorf("bus: limit slot %s holds no slot: %w", key, err)
	}
	return e.Revision, &slot, nil
}
