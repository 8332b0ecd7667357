package bus

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// maxErrorHeader caps the Jetfleet-Error header; a stack trace fits.
const maxErrorHeader = 16 << 10

// Failure says why and when a job is being dead-lettered.
type Failure struct {
	// Reason is the error text; it may span lines (a panic's stack).
	Reason string
	// Attempts is how many times the job ran (0 when it never could run).
	Attempts int
	// At is when it failed for good; default now.
	At time.Time
}

// DeadLetter stores job in the DLQ stream with its original body and headers
// plus Jetfleet-Error, -Attempts, -Failed-At, -Job-Id and -Origin, and waits
// for JetStream's acknowledgement. Only after it returns nil may the caller
// remove the original (Term). Its Nats-Msg-Id is "JOBS:<seq>", so doing it
// twice, or from two processes at once, stores one dead letter.
func DeadLetter(ctx context.Context, js jetstream.JetStream, job *Job, f Failure) error {
	msg := deadLetterMsg(job, f, js.Conn().MaxPayload())
	if _, err := js.PublishMsg(ctx, msg); err != nil {
		return fmt.Errorf("bus: dead-letter job %s (%s): %w", job.ID, origin(job), err)
	}
	return nil
}

func origin(job *Job) string { return JobsStream + ":" + strconv.FormatUint(job.Seq, 10) }

func deadLetterMsg(job *Job, f Failure, maxPayload int64) *nats.Msg {
	if f.At.IsZero() {
		f.At = time.Now()
	}
	h := nats.Header{}
	for k, vs := range job.Header {
		if !strings.HasPrefix(k, "Nats-") {
			h[k] = append([]string(nil), vs...)
		}
	}
	h.Set(HeaderMsgID, origin(job))
	h.Set(HeaderJobID, job.ID)
	h.Set(HeaderOrigin, origin(job))
	h.Set(HeaderAttempts, strconv.Itoa(f.Attempts))
	h.Set(HeaderFailedAt, f.At.UTC().Format(time.RFC3339Nano))
	room := maxPayload - int64(len(job.Body)) - headerSize(h) - 64
	h.Set(HeaderError, EncodeHeaderText(f.Reason, int(min(room, maxErrorHeader))))
	queue, kind := orUnknown(job.Queue), orUnknown(job.Kind)
	return &nats.Msg{Subject: DLQSubject(queue, kind, job.ID), Header: h, Data: job.Body}
}

func orUnknown(name string) string {
	if ValidateName("name", name) != nil {
		return "unknown"
	}
	return name
}

// EncodeHeaderText makes s fit in one header value of at most limit bytes:
// line breaks become the two characters `\n` (and a backslash `\\`), and a
// text that is too long is cut with a note. DecodeHeaderText reverses it.
func EncodeHeaderText(s string, limit int) string {
	s = strings.NewReplacer(`\`, `\\`, "\r\n", `\n`, "\n", `\n`, "\r", `\n`).Replace(s)
	if limit < 64 {
		limit = 64
	}
	if len(s) > limit {
		s = s[:limit-16] + " …[truncated]"
	}
	return s
}

// DecodeHeaderText turns a header written by EncodeHeaderText back into text.
func DecodeHeaderText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case 'n':
				b.WriteByte('\n')
				i++
				continue
			case '\\':
				b.WriteByte('\\')
				i++
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
