package wire

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// maxErrorHeader caps the Jetfleet-Error header; a stack trace fits.
const maxErrorHeader = 16 << 10

// DeadLetter is a job being dead-lettered: the fields of the delivery it
// came from (bus.Job's) and why it failed.
type DeadLetter struct {
	// ID, Queue and Kind are the job's; an invalid queue or kind is stored
	// as "unknown".
	ID, Queue, Kind string
	// Seq is the job's sequence in JOBS.
	Seq uint64
	// Header and Body are the job's as delivered.
	Header nats.Header
	Body   []byte
	// Reason is the error text; it may span lines (a panic's stack).
	Reason string
	// Attempts is how many times the job ran (0 when it never could run).
	Attempts int
	// At is when it failed for good; default now.
	At time.Time
}

// PublishDeadLetter stores dl in the DLQ stream with the job's body and
// headers (less Nats-* and Jetfleet-Tries-Used) plus Jetfleet-Error,
// -Attempts, -Failed-At, -Job-Id and -Origin,
// and waits for JetStream's acknowledgement. Only after it returns nil may
// the caller remove the original (Term). Its Nats-Msg-Id is "JOBS:<seq>",
// so doing it twice, or from two processes at once, stores one dead letter.
func PublishDeadLetter(ctx context.Context, js jetstream.JetStream, dl DeadLetter) error {
	msg := DeadLetterMsg(dl, js.Conn().MaxPayload())
	_, err := js.PublishMsg(ctx, msg)
	switch {
	case err == nil:
		return nil
	case storeFull(err):
		return fmt.Errorf("bus: dead-letter job %s (%s): %w (%w)", dl.ID, Origin(dl.Seq), ErrFailedFull, err)
	default:
		return fmt.Errorf("bus: dead-letter job %s (%s): %w", dl.ID, Origin(dl.Seq), err)
	}
}

// ErrFailedFull is the error of a dead letter the DLQ stream refused
// because it holds its MaxBytes (JETFLEET_FAILED_MAX_BYTES) already.
var ErrFailedFull = errors.New("DLQ is full (JETFLEET_FAILED_MAX_BYTES); the job stays queued until dead letters are retried, removed or expire")

// storeFull reports whether err is JetStream refusing a message because
// its stream is at its MaxBytes or MaxMsgs with discard new.
func storeFull(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return strings.Contains(apiErr.Description, "maximum bytes exceeded") ||
		strings.Contains(apiErr.Description, "maximum messages exceeded")
}

// Origin is a job's place in JOBS as the Jetfleet-Origin header gives it:
// "JOBS:<seq>".
func Origin(seq uint64) string { return jobsStream + ":" + strconv.FormatUint(seq, 10) }

// DeadLetterMsg is the DLQ message of dl, for a server whose max_payload
// is maxPayload: the reason is cut to fit beside the body and headers.
func DeadLetterMsg(dl DeadLetter, maxPayload int64) *nats.Msg {
	if dl.At.IsZero() {
		dl.At = time.Now()
	}
	h := nats.Header{}
	for k, vs := range dl.Header {
		// Jetfleet-Attempts counts every try the job used, so the count
		// carried by a released job (Jetfleet-Tries-Used) is not kept:
		// a retry of the dead letter starts again from attempt 1.
		if !strings.HasPrefix(k, "Nats-") && k != headerTriesUsed && k != HeaderPendingFailure {
			h[k] = append([]string(nil), vs...)
		}
	}
	h.Set(headerMsgID, Origin(dl.Seq))
	h.Set(headerJobID, dl.ID)
	h.Set(headerOrigin, Origin(dl.Seq))
	h.Set(headerAttempts, strconv.Itoa(dl.Attempts))
	h.Set(headerFailedAt, dl.At.UTC().Format(time.RFC3339Nano))
	body, reason := dl.Body, dl.Reason
	if omitted := dropLargeHeaders(h); omitted != "" {
		// A job published with headers near JetStream's limit (raw:
		// dispatch refuses none) cannot carry the letter's own too.
		h.Set(HeaderHeadersOmitted, omitted)
		reason = fmt.Sprintf("its headers %s are not kept: with the dead letter's own they would exceed the %d bytes of headers JetStream stores; %s", omitted, maxStoredHeader, reason)
	}
	room := maxPayload - int64(len(body)) - HeaderSize(h) - 64
	if maxPayload > 0 && room < minReason {
		// A job within a few hundred bytes of max_payload (published
		// raw: a dispatch keeps room) cannot carry the dead letter's
		// headers too. Its letter keeps its size instead of its body,
		// rather than being refused on every delivery, never stored.
		h.Set(HeaderBodyOmitted, strconv.Itoa(len(body)))
		reason = fmt.Sprintf("its body of %d bytes is not kept: with the dead letter's headers it would exceed the server's max_payload of %d bytes; %s", len(body), maxPayload, reason)
		body = nil
		room = maxPayload - HeaderSize(h) - 64
	}
	room = min(room, maxStoredHeader-HeaderSize(h)-64)
	h.Set(headerError, EncodeHeaderText(reason, int(min(room, maxErrorHeader))))
	queue, kind := orUnknown(dl.Queue), orUnknown(dl.Kind)
	return &nats.Msg{Subject: DLQSubject(queue, kind, dl.ID), Header: h, Data: body}
}

// minReason is the least room a dead letter keeps for its reason
// (EncodeHeaderText's floor).
const minReason = 64

// maxStoredHeader is the most bytes of headers JetStream stores with a
// message (error 10097 beyond).
const maxStoredHeader = math.MaxUint16

// letterHeaderRoom is what a dead letter keeps free under maxStoredHeader
// for the headers it sets after dropLargeHeaders: the omitted list and
// the reason.
const letterHeaderRoom = 2048

// dropLargeHeaders removes the job's largest headers from h until h fits
// under maxStoredHeader with room for the letter's reason, and returns
// the removed ones as "Name (n bytes), ..." ("" when none). The letter's
// own headers (Jetfleet-Origin and the like) are small and set already.
func dropLargeHeaders(h nats.Header) string {
	var omitted []string
	for HeaderSize(h) > maxStoredHeader-letterHeaderRoom {
		largest, size := "", 0
		for k, vs := range h {
			n := 0
			for _, v := range vs {
				n += len(k) + len(": \r\n") + len(v)
			}
			if n > size {
				largest, size = k, n
			}
		}
		delete(h, largest)
		omitted = append(omitted, fmt.Sprintf("%s (%d bytes)", largest, size))
	}
	return strings.Join(omitted, ", ")
}

// DeadLetterRoom is what a dispatch keeps free under max_payload for the
// headers a dead letter adds (its origin, attempts, time and reason), so
// that every job it stores can be dead-lettered with its body.
const DeadLetterRoom = 1024

func orUnknown(name string) string {
	if ValidateName("name", name) != nil {
		return "unknown"
	}
	return name
}
