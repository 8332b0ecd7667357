package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// ErrUnknownJob is wrapped when no failed job has the given ID.
var ErrUnknownJob = errors.New("no failed job with this ID")

// ErrUnknownQueue is wrapped when a queue has no consumer on JOBS: no
// worker ever served it and nothing provisioned it.
var ErrUnknownQueue = errors.New("unknown queue")

// Inspector reads and manages the queues from the operator's side, as
// Asynq's Inspector and Laravel's queue:* commands do: failed jobs (list,
// show, retry, forget, flush), per-queue statistics, the monitor, and
// pausing queues. It works on the JOBS and DLQ streams and the jetfleet KV
// buckets only, so the stock `nats` CLI sees the same data. It is safe for
// concurrent use.
type Inspector struct {
	js  jetstream.JetStream
	cfg Config
	// afterRepublish, when set (tests only), runs between a retry's
	// republish and the removal of its dead letter; an error stops the
	// retry there, as a crash would.
	afterRepublish func(*FailedJob) error
	// clearGrace is how young a unique key Clear leaves held (default
	// clearGrace; tests shorten it).
	clearGrace time.Duration
}

// NewInspector returns an Inspector working through js. cfg supplies the
// replica count of the buckets it may have to create.
func NewInspector(js jetstream.JetStream, cfg Config) (*Inspector, error) {
	if js == nil {
		return nil, errors.New("bus: NewInspector needs a JetStream context")
	}
	return &Inspector{js: js, cfg: cfg.withDefaults()}, nil
}

// FailedJob is one dead letter: a job that failed for good, as stored in DLQ.
type FailedJob struct {
	// ID is the job's ID (Jetfleet-Job-Id).
	ID string
	// Queue and Kind are where the job ran and where a retry puts it back.
	Queue, Kind string
	// Attempts is how many times it ran; Error why it failed (all lines).
	Attempts int
	Error    string
	// FailedAt is when it was dead-lettered.
	FailedAt time.Time
	// Origin is where it was in JOBS, "JOBS:<seq>".
	Origin string
	// Body is the job's arguments as sent.
	Body []byte
	// Header holds every stored header: the job's own plus the Jetfleet-*
	// failure headers and Nats-Msg-Id.
	Header nats.Header
	// Seq and Subject place the dead letter in DLQ (`nats stream get DLQ <seq>`).
	Seq     uint64
	Subject string
}

// FailedFilter selects failed jobs. The zero value selects all of them.
type FailedFilter struct {
	// Queue and Kind keep only the jobs of this queue and kind; "" is any.
	Queue, Kind string
	// Since keeps only the jobs dead-lettered at or after this time.
	Since time.Time
	// Limit caps a listing at the newest Limit jobs; 0 is no cap.
	Limit int
}

// subject is the DLQ subject filter that selects f's queue and kind.
func (f FailedFilter) subject() (string, error) {
	if f.Queue == "" && f.Kind == "" {
		return DLQPrefix + ".>", nil
	}
	q, k := "*", "*"
	if f.Queue != "" {
		if err := wire.ValidateName("queue", f.Queue); err != nil {
			return "", err
		}
		q = f.Queue
	}
	if f.Kind != "" {
		if err := wire.ValidateName("kind", f.Kind); err != nil {
			return "", err
		}
		k = f.Kind
	}
	return DLQPrefix + "." + q + "." + k + ".*", nil
}

// firstWindow is how many sequences a listing reads back at first; each
// window without a match quadruples it, up to maxWindow.
const (
	firstWindow = 64
	maxWindow   = 1 << 20
)

// FailedJobs lists failed jobs newest first. It walks DLQ backwards from its
// last sequence in windows, reading only the messages that match the filter
// (the server skips the others with its subject index), so listing the
// newest 50 costs about 50 direct gets however long DLQ is; Since is turned
// into a start sequence with one request.
func (in *Inspector) FailedJobs(ctx context.Context, f FailedFilter) ([]*FailedJob, error) {
	filter, err := f.subject()
	if err != nil {
		return nil, err
	}
	s, low, last, err := in.dlqRange(ctx, f.Since)
	if err != nil || low == 0 {
		return nil, err
	}
	var out []*FailedJob
	window := uint64(max(f.Limit, firstWindow))
	for hi := last; hi >= low; {
		lo := low
		if hi-low >= window {
			lo = hi - window + 1
		}
		var found []*FailedJob
		err := scanDLQ(ctx, s, filter, lo, hi, func(fj *FailedJob) error {
			found = append(found, fj)
			return nil
		})
		if err != nil {
			return nil, err
		}
		slices.Reverse(found)
		out = append(out, found...)
		if f.Limit > 0 && len(out) >= f.Limit {
			return out[:f.Limit], nil
		}
		if len(found) == 0 {
			window = min(window*4, maxWindow)
		}
		if lo == low {
			break
		}
		hi = lo - 1
	}
	return out, nil
}

// dlqRange returns the DLQ stream and the sequences a listing covers: from
// the first message stored at or after since (or the first message) to the
// last. low is 0 when nothing is in range.
func (in *Inspector) dlqRange(ctx context.Context, since time.Time) (s jetstream.Stream, low, last uint64, err error) {
	s, err = in.stream(ctx, DLQStream)
	if err != nil {
		return nil, 0, 0, err
	}
	st := s.CachedInfo().State
	if st.Msgs == 0 {
		return s, 0, 0, nil
	}
	low = st.FirstSeq
	if !since.IsZero() {
		seq, err := seqAtTime(ctx, in.js, DLQStream, since)
		if err != nil || seq == 0 {
			return s, 0, 0, err
		}
		low = max(low, seq)
	}
	return s, low, st.LastSeq, nil
}

// scanDLQ calls fn, oldest first, for each dead letter on filter with a
// sequence from lo to hi, one direct get per match.
func scanDLQ(ctx context.Context, s jetstream.Stream, filter string, lo, hi uint64, fn func(*FailedJob) error) error {
	for seq := lo; seq <= hi; {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("bus: read %s at %d: %w", DLQStream, seq, err)
		}
		if m.Sequence > hi {
			return nil
		}
		if err := fn(failedFromMsg(m)); err != nil {
			return err
		}
		seq = m.Sequence + 1
	}
	return nil
}

// FailedJob returns the failed job with id. It is one direct get of the
// last message on dlq.*.*.<id>: the ID is the subject's last token, so no
// scan of DLQ is needed however many dead letters it holds. An unknown ID
// is an error wrapping ErrUnknownJob.
func (in *Inspector) FailedJob(ctx context.Context, id string) (*FailedJob, error) {
	s, err := in.stream(ctx, DLQStream)
	if err != nil {
		return nil, err
	}
	return lastFailed(ctx, s, id)
}

func lastFailed(ctx context.Context, s jetstream.Stream, id string) (*FailedJob, error) {
	if id == "" {
		return nil, fmt.Errorf("%w: the job ID is empty", ErrInvalid)
	}
	m, err := s.GetLastMsgForSubject(ctx, wire.DLQFilterForID(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("%w: %q (see `jetfleet queue failed` for the IDs)", ErrUnknownJob, id)
	}
	if err != nil {
		return nil, fmt.Errorf("bus: failed job %q: %w", id, err)
	}
	return failedFromMsg(m), nil
}

// stream looks up a jetfleet stream, saying which one is missing.
func (in *Inspector) stream(ctx context.Context, name string) (jetstream.Stream, error) {
	s, err := in.js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("bus: stream %s does not exist on this server (start a worker or `jetfleet up` to provision it): %w", name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("bus: stream %s: %w", name, err)
	}
	return s, nil
}

// directGetHeaders are added by the server to a direct get's reply; they
// are not part of the stored message.
var directGetHeaders = []string{
	jetstream.StreamHeader, jetstream.SequenceHeader, jetstream.TimeStampHeaer,
	jetstream.SubjectHeader, "Nats-Num-Pending", "Nats-Last-Sequence",
}

func failedFromMsg(m *jetstream.RawStreamMsg) *FailedJob {
	h := nats.Header{}
	for k, vs := range m.Header {
		if !slices.Contains(directGetHeaders, k) {
			h[k] = vs
		}
	}
	fj := &FailedJob{Body: m.Data, Header: h, Seq: m.Sequence, Subject: m.Subject, Origin: h.Get(HeaderOrigin)}
	parts := strings.SplitN(m.Subject, ".", 4)
	if len(parts) == 4 {
		fj.Queue, fj.Kind = parts[1], parts[2]
	}
	fj.ID = h.Get(HeaderJobID)
	if fj.ID == "" && len(parts) == 4 {
		fj.ID = parts[3]
	}
	fj.Error = wire.DecodeHeaderText(h.Get(HeaderError))
	fj.Attempts, _ = strconv.Atoi(h.Get(HeaderAttempts))
	fj.FailedAt = m.Time
	if t, err := time.Parse(time.RFC3339Nano, h.Get(HeaderFailedAt)); err == nil {
		fj.FailedAt = t
	}
	return fj
}
