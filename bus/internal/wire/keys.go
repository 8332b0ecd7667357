package wire

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The parts of the wire contract for unique jobs, fleet-wide limits and
// releases: their headers, their two KV buckets and how a user's key
// becomes a KV key.
const (
	headerUnique    = "Jetfleet-Unique"
	headerTriesUsed = "Jetfleet-Tries-Used"
	headerReleased  = "Jetfleet-Released"
	// HeaderPendingFailure is on a job stored again because DLQ was full
	// when it failed for good: "<attempts> <reason>" (the reason as
	// EncodeHeaderText writes it). Its next delivery is dead-lettered
	// with them, unrun.
	HeaderPendingFailure = "Jetfleet-Pending-Failure"

	uniqueBucket = "jetfleet_unique"
	limitsBucket = "jetfleet_limits"
)

// MaxKeyLen is the longest unique or limit key, in bytes: the longest job
// ID that is its own subject token.
const MaxKeyLen = 128

// MarkerTTL is how long the unique and limits buckets keep the marker of
// a removed or expired key (their LimitMarkerTTL): long enough for every
// watcher to see it, short enough that markers do not pile up.
const MarkerTTL = time.Minute

// ValidateKey checks a unique or limit key: 1 to MaxKeyLen bytes of UTF-8
// without control characters. what names it in the error, which wraps
// ErrInvalid.
func ValidateKey(what, key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalid, what)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: %s is %d bytes; the limit is %d (a subject token's)", ErrInvalid, what, len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrInvalid, what, key)
	case strings.ContainsFunc(key, unicode.IsControl):
		return fmt.Errorf("%w: %s %q contains a control character", ErrInvalid, what, key)
	}
	return nil
}

// KeyToken turns a unique or limit key into one KV key token: the bytes
// A-Z, a-z, 0-9, '_' and '-' stay as they are, every other byte becomes
// '=' and its two upper-case hex digits ("sync-account:7" is
// "sync-account=3A7"). It is reversible, so two keys never share a token,
// and it never holds a '.', so a key is always one token.
func KeyToken(key string) string {
	plain := true
	for i := 0; i < len(key) && plain; i++ {
		plain = tokenByte(key[i])
	}
	if plain {
		return key
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(key) + 8)
	for i := 0; i < len(key); i++ {
		c := key[i]
		if tokenByte(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('=')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

func tokenByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// TTL is d as a per-message TTL: JetStream counts whole seconds, at least
// one, so d is rounded up.
func TTL(d time.Duration) time.Duration {
	if d <= time.Second {
		return time.Second
	}
	return (d + time.Second - 1).Truncate(time.Second)
}

// UniqueBucketConfig is the unique-keys bucket (bus.UniqueBucket) with n
// replicas (at least 1): file storage, one value per key, and per-key TTLs
// (every key is written with one, so nothing stays forever).
func UniqueBucketConfig(n int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:         uniqueBucket,
		Description:    "jetfleet unique jobs: key = the unique key's token, value = the holder; every key has a TTL",
		History:        1,
		Storage:        jetstream.FileStorage,
		Replicas:       replicas(n),
		MaxValueSize:   4096,
		LimitMarkerTTL: MarkerTTL,
	}
}

// LimitsBucketConfig is the limits bucket (bus.LimitsBucket) with n
// replicas (at least 1): the slots of concurrency caps and rate limits,
// one value per key, every key with a TTL.
func LimitsBucketConfig(n int) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:         limitsBucket,
		Description:    "jetfleet concurrency caps (c.<kind>.<key>.<slot>) and rate limits (r.<kind>.<key>.<slot>); every key has a TTL",
		History:        1,
		Storage:        jetstream.FileStorage,
		Replicas:       replicas(n),
		MaxValueSize:   4096,
		LimitMarkerTTL: MarkerTTL,
	}
}

// PutIfRevision writes value to key of bucket with a TTL, only if the
// key's last revision is rev (0: the key has no message at all), and
// returns the new revision. nats.go's Update cannot give a TTL; this is
// the same write with one. A mismatch wraps jetstream.ErrKeyExists.
func PutIfRevision(ctx context.Context, js jetstream.JetStream, bucket, key string, value []byte, rev uint64, ttl time.Duration) (uint64, error) {
	msg := &nats.Msg{Subject: "$KV." + bucket + "." + key, Data: value, Header: nats.Header{}}
	ack, err := js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(TTL(ttl)), jetstream.WithRetryAttempts(0))
	if err != nil {
		if wrongLastSeq(err) {
			return 0, fmt.Errorf("%w: %s/%s is not at revision %d: %w", jetstream.ErrKeyExists, bucket, key, rev, err)
		}
		return 0, err
	}
	return ack.Sequence, nil
}

func wrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}

// ReleaseMsgID is the dedupe ID (Nats-Msg-Id) of the message that
// releases the job stored at JOBS sequence seq: one message of JOBS is
// released at most once, so doing it again after a crash stores nothing.
func ReleaseMsgID(id string, seq uint64) string {
	return id + ":release:" + strconv.FormatUint(seq, 10)
}

// KVEntry is the last message of one key as the stream's leader has it.
type KVEntry struct {
	// Value is the key's value; nil when Deleted.
	Value []byte
	// Revision is the message's sequence: what PutIfRevision expects.
	Revision uint64
	// Created is when the server stored it.
	Created time.Time
	// Deleted is true for a delete or purge marker, or the marker the
	// server leaves when the key's TTL ran out.
	Deleted bool
}

// GetLatest reads the last message of key in bucket from the bucket
// stream's leader, never from a follower that may lag (nats.go's Get uses
// direct gets, which any replica answers). A key without any message is
// jetstream.ErrKeyNotFound.
func GetLatest(ctx context.Context, js jetstream.JetStream, bucket, key string) (KVEntry, error) {
	req, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{"$KV." + bucket + "." + key})
	if err != nil {
		return KVEntry{}, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
	}
	reply, err := js.Conn().RequestWithContext(ctx, APIPrefix(js)+"STREAM.MSG.GET.KV_"+bucket, req)
	if err != nil {
		return KVEntry{}, fmt.Errorf("bus: read %s/%s: %w", bucket, key, err)
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Seq  uint64    `json:"seq"`
			Hdrs []byte    `json:"hdrs"`
			Data []byte    `json:"data"`
			Time time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return KVEntry{}, fmt.Errorf("bus: read %s/%s: bad reply: %w", bucket, key, err)
	}
	if resp.Error != nil {
		if resp.Error.Code == 404 {
			return KVEntry{}, jetstream.ErrKeyNotFound
		}
		err := &jetstream.APIError{Code: resp.Error.Code, ErrorCode: jetstream.ErrorCode(resp.Error.ErrCode), Description: resp.Error.Description}
		return KVEntry{}, fmt.Errorf("bus: read %s/%s: %w", bucket, key, err)
	}
	if resp.Message == nil {
		return KVEntry{}, fmt.Errorf("bus: read %s/%s: reply without a message", bucket, key)
	}
	m := resp.Message
	hdr := string(m.Hdrs)
	deleted := strings.Contains(hdr, "KV-Operation: DEL") || strings.Contains(hdr, "KV-Operation: PURGE") || strings.Contains(hdr, "Nats-Marker-Reason")
	e := KVEntry{Revision: m.Seq, Created: m.Time, Deleted: deleted}
	if !deleted {
		e.Value = m.Data
	}
	return e, nil
}

// PurgeIfRevision removes key from bucket, leaving a marker that lives
// MarkerTTL, only if the key's last revision is rev, and returns the
// marker's revision. A mismatch (another writer came first) wraps
// jetstream.ErrKeyExists.
func PurgeIfRevision(ctx context.Context, js jetstream.JetStream, bucket, key string, rev uint64) (uint64, error) {
	msg := &nats.Msg{Subject: "$KV." + bucket + "." + key, Header: nats.Header{}}
	msg.Header.Set("KV-Operation", "PURGE")
	msg.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	ack, err := js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(MarkerTTL), jetstream.WithRetryAttempts(0))
	if err != nil {
		if wrongLastSeq(err) {
			return 0, fmt.Errorf("%w: %s/%s is not at revision %d: %w", jetstream.ErrKeyExists, bucket, key, rev, err)
		}
		return 0, err
	}
	return ack.Sequence, nil
}
