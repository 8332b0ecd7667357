package bus

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// Releases: JetStream's delivery count cannot be reset, so a job that
// must run again without using a try (its handler released it, or a
// fleet-wide limit made it wait) is stored again as a new message that
// carries the tries its job used so far, and the original is removed.

const (
	// HeaderTriesUsed is how many tries a released job had used before
	// it was stored again. A job's attempt number is this plus the
	// delivery count of its message. Dead letters do not keep it: their
	// HeaderAttempts counts every try.
	HeaderTriesUsed = "Jetfleet-Tries-Used"
	// HeaderReleased is how many times a job was released: stored again
	// to run later without using a try, by its handler or because a
	// concurrency cap or rate limit had no room for it.
	HeaderReleased = "Jetfleet-Released"
	// HeaderPendingFailure is on a job stored again because DLQ was full
	// (JETFLEET_FAILED_MAX_BYTES) when it failed for good: "<attempts>
	// <reason>". A worker dead-letters its next delivery with that reason
	// and attempt count, without running it (PendingFailure).
	HeaderPendingFailure = wire.HeaderPendingFailure
)

// parseCarried reads the counts a released job carries: its attempt
// number goes on from the tries it used, and its releases are kept apart.
// Each is at most MaxCarried, so that no count overflows the attempt
// number or its next release.
func (j *Job) parseCarried() error {
	if v := j.Header.Get(HeaderTriesUsed); v != "" {
		n, err := parseCarriedCount(HeaderTriesUsed, v)
		if err != nil {
			return err
		}
		j.Attempt += n
	}
	if v := j.Header.Get(HeaderReleased); v != "" {
		n, err := parseCarriedCount(HeaderReleased, v)
		if err != nil {
			return err
		}
		j.Released = n
	}
	return nil
}

// MaxCarried is the largest count HeaderTriesUsed and HeaderReleased may
// hold: far more than any job uses, far from overflowing an int.
const MaxCarried = math.MaxInt32

func parseCarriedCount(header, v string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 || n > MaxCarried {
		return 0, fmt.Errorf("%w: header %s=%q is not an integer from 0 to %d", ErrInvalid, header, v, MaxCarried)
	}
	return n, nil
}

// Release stores job again, to be delivered after after (at once when
// 0, else through JetStream's scheduler as a delayed job), without using
// a try: the new message carries HeaderTriesUsed (the tries used before
// this attempt, which does not count) and HeaderReleased (one more), with
// the job's ID, body and headers. It waits for JetStream's
// acknowledgement; only after it returns nil may the caller remove the
// original (Ack). Its Nats-Msg-Id is "<id>:release:<seq>" (seq: the
// original's place in JOBS), so releasing the same message twice, after a
// crash in between, stores it once.
func Release(ctx context.Context, js jetstream.JetStream, job *Job, after time.Duration) error {
	msg := storeAgainMsg(job, after, time.Now(), job.Attempt-1, job.Released+1)
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("%w: release job %s (%s): %w", ErrNotAcknowledged, job.ID, wire.Origin(job.Seq), err)
	}
	return nil
}

// RetryLater stores job again, to be delivered after after through
// JetStream's scheduler, as its next try: unlike Release, the attempt
// that failed counts (the new message's HeaderTriesUsed is job.Attempt)
// and HeaderReleased is unchanged. A worker stores a retry whose wait is
// long this way instead of handing the message back with a delay, which
// would keep it among its queue's unacknowledged jobs (MaxAckPending) for
// the whole wait. Only after it returns nil may the caller remove the
// original (Ack); storing the same message twice stores it once, as
// Release does.
func RetryLater(ctx context.Context, js jetstream.JetStream, job *Job, after time.Duration) error {
	msg := storeAgainMsg(job, max(after, time.Millisecond), time.Now(), job.Attempt, job.Released)
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("%w: store job %s (%s) for its retry: %w", ErrNotAcknowledged, job.ID, wire.Origin(job.Seq), err)
	}
	return nil
}

// storeAgainMsg is job stored again to run after after, carrying
// triesUsed and released (each header left out when 0).
func storeAgainMsg(job *Job, after time.Duration, now time.Time, triesUsed, released int) *nats.Msg {
	h := nats.Header{}
	for k, vs := range job.Header {
		if !strings.HasPrefix(k, "Nats-") {
			h[k] = append([]string(nil), vs...)
		}
	}
	h.Set(HeaderJobID, job.ID)
	setCount(h, HeaderTriesUsed, triesUsed)
	setCount(h, HeaderReleased, released)
	h.Set(HeaderMsgID, wire.ReleaseMsgID(job.ID, job.Seq))
	msg := &nats.Msg{Subject: wire.JobIDSubject(job.Queue, job.Kind, job.ID), Header: h, Data: job.Body}
	if after > 0 {
		// A backoff or release of centuries (a producer's header) waits
		// until the last time JetStream's scheduler can hold, not past it.
		at := now.Add(after)
		if last := LastReadyAt(); at.After(last) {
			at = last
		}
		scheduleAt(msg, job.Queue, job.ID, at)
	}
	return msg
}

// setCount sets header to n, or removes it when n is 0.
func setCount(h nats.Header, header string, n int) {
	if n > 0 {
		h.Set(header, strconv.Itoa(n))
	} else {
		h.Del(header)
	}
}

// maxPendingReason bounds the reason a job carries in
// HeaderPendingFailure, so that the job still fits the room a dispatch
// keeps under max_payload.
const maxPendingReason = 512

// SetPendingFailure sets HeaderPendingFailure on h: the job failed for
// good after attempts tries (0: it never ran) for reason, and waits to be
// dead-lettered. The reason is cut to 512 bytes.
func SetPendingFailure(h nats.Header, reason string, attempts int) {
	h.Set(HeaderPendingFailure, strconv.Itoa(max(attempts, 0))+" "+wire.EncodeHeaderText(reason, maxPendingReason))
}

// PendingFailure reads HeaderPendingFailure: the reason and attempt count
// the job was failed with, and whether it carries a valid one.
func PendingFailure(h nats.Header) (reason string, attempts int, ok bool) {
	n, text, found := strings.Cut(h.Get(HeaderPendingFailure), " ")
	if !found {
		return "", 0, false
	}
	attempts, err := strconv.Atoi(n)
	if err != nil || attempts < 0 || attempts > MaxCarried {
		return "", 0, false
	}
	return wire.DecodeHeaderText(text), attempts, true
}
