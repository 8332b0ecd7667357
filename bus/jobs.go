package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// JobFilter selects jobs for Inspector.Jobs. The zero value selects the
// recent jobs of every queue.
type JobFilter struct {
	// Tag keeps only the jobs with this tag, found in the tag index (jobs
	// dispatched within Config.CompletedRetention).
	Tag string
	// Queue and Kind keep only the jobs of this queue and kind; "" is any.
	Queue, Kind string
	// State keeps only the jobs in this state; "" is any.
	State JobState
	// Limit caps the list. Default 50; at most 1000.
	Limit int
}

// maxExamined bounds how many records, tag entries or messages one
// listing reads to find its matches: a filter that matches few of the
// recent jobs lists those it finds among them.
const maxExamined = 5000

func (f *JobFilter) check() error {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	f.Limit = min(f.Limit, 1000)
	if f.Queue != "" {
		if err := wire.ValidateName("queue", f.Queue); err != nil {
			return err
		}
	}
	if f.Kind != "" {
		if err := wire.ValidateName("kind", f.Kind); err != nil {
			return err
		}
	}
	if f.Tag != "" {
		if _, err := wire.ValidateTags([]string{f.Tag}); err != nil {
			return err
		}
	}
	switch f.State {
	case "", JobDelayed, JobReady, JobRunning, JobRetrying, JobSucceeded, JobDead, JobCancelled:
		return nil
	}
	return fmt.Errorf("%w: state %q is not one of delayed, ready, running, retrying, succeeded, dead, cancelled", ErrInvalid, f.State)
}

func (f JobFilter) matches(st *JobStatus) bool {
	return (f.Queue == "" || st.Queue == f.Queue) && (f.Kind == "" || st.Kind == f.Kind) && (f.State == "" || st.State == f.State)
}

// Jobs lists jobs as f selects them, newest first (ready jobs in the
// order they will run), like Horizon's recent jobs. Each source is read by
// subject, never by scanning every job:
//
//   - a tag: its index entries in HistoryStream, newest first, each job then
//     looked up as Job does;
//   - running: the workers' answers (Running);
//   - ready: the messages of the queue past its consumer's last delivery;
//   - delayed: the queue's schedules in JOBS, newest first;
//   - dead: DLQ, newest first (FailedJobs);
//   - succeeded, retrying, cancelled: the records in HistoryStream, newest
//     first (retrying: those whose next attempt is not due yet);
//   - any state: the records, the running jobs and the dead letters, merged;
//     a job is running only when a worker says so, never from a record.
//
// A listing reads at most 5,000 entries: a filter that matches few of the
// recent jobs returns those it found among them.
func (in *Inspector) Jobs(ctx context.Context, f JobFilter) ([]*JobStatus, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	switch {
	case f.Tag != "":
		return in.jobsOfTag(ctx, f)
	case f.State == JobRunning:
		return in.runningJobs(ctx, f)
	case f.State == JobReady:
		return in.readyJobs(ctx, f)
	case f.State == JobDelayed:
		return in.delayedJobs(ctx, f)
	case f.State == JobDead:
		return in.deadJobs(ctx, f)
	case f.State != "":
		return in.recordedJobs(ctx, f)
	}
	return in.recentJobs(ctx, f)
}

func (in *Inspector) runningJobs(ctx context.Context, f JobFilter) ([]*JobStatus, error) {
	all, err := in.Running(ctx)
	if err != nil {
		return nil, err
	}
	var out []*JobStatus
	for _, st := range all {
		if f.matches(st) && len(out) < f.Limit {
			out = append(out, st)
		}
	}
	return out, nil
}

func (in *Inspector) deadJobs(ctx context.Context, f JobFilter) ([]*JobStatus, error) {
	fjs, err := in.FailedJobs(ctx, FailedFilter{Queue: f.Queue, Kind: f.Kind, Limit: f.Limit})
	if err != nil {
		return nil, err
	}
	out := make([]*JobStatus, len(fjs))
	for i, fj := range fjs {
		st := &JobStatus{ID: fj.ID, Queue: fj.Queue, Kind: fj.Kind, State: JobDead, At: fj.FailedAt, FinishedAt: fj.FailedAt,
			Attempt: fj.Attempts, Error: fj.Error, Body: fj.Body, DeadLetter: fj}
		fillFromHeaders(st, fj.Header)
		out[i] = st
	}
	return out, nil
}

// recordedJobs walks the records newest first, skipping those of jobs
// that have moved on (movedOn).
func (in *Inspector) recordedJobs(ctx context.Context, f JobFilter) ([]*JobStatus, error) {
	var out []*JobStatus
	now := time.Now()
	err := in.walkBack(ctx, HistoryStream, wire.StatusFilter(f.Queue, f.Kind), maxExamined, func(m *jetstream.RawStreamMsg) bool {
		if st := recordFromMsg(m); st != nil && !movedOn(st, f, now) && f.matches(st) {
			out = append(out, st)
		}
		return len(out) < f.Limit
	})
	return out, err
}

// movedOn reports whether the job of the record st has moved on from the
// state st says, with no record saying so, since neither a start nor a
// dead letter writes one:
//
//   - a running record (its progress): whether a job runs is the workers'
//     word, and a listing takes its running jobs from them (runningJobs);
//     a job no worker runs has died after its last attempt (listed from
//     DLQ), or its worker stopped (Job tells what it waits for).
//   - listing retrying jobs, a record whose next attempt is due: that job
//     is running, dead after its last attempt, or waiting for a worker.
func movedOn(st *JobStatus, f JobFilter, now time.Time) bool {
	return st.State == JobRunning || f.State == JobRetrying && !now.Before(st.NextAttemptAt)
}

func (in *Inspector) delayedJobs(ctx context.Context, f JobFilter) ([]*JobStatus, error) {
	filter := SchedulePrefix + ".delay.>"
	if f.Queue != "" {
		filter = SchedulePrefix + ".delay." + f.Queue + ".*"
	}
	var out []*JobStatus
	err := in.walkBack(ctx, JobsStream, filter, maxExamined, func(m *jetstream.RawStreamMsg) bool {
		if st := statusFromDelayed(m); f.matches(st) {
			out = append(out, st)
		}
		return len(out) < f.Limit
	})
	return out, err
}

// readyJobs lists the jobs no worker has received yet, queue by queue,
// in the order they will run.
func (in *Inspector) readyJobs(ctx context.Context, f JobFilter) ([]*JobStatus, error) {
	queues := []string{f.Queue}
	if f.Queue == "" {
		var err error
		if queues, err = in.Queues(ctx); err != nil {
			return nil, err
		}
	}
	var out []*JobStatus
	for _, q := range queues {
		c, err := in.js.Consumer(ctx, JobsStream, wire.ConsumerName(q))
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("bus: consumer of queue %s: %w", q, err)
		}
		from := c.CachedInfo().Delivered.Stream + 1
		examined := 0
		err = in.batchGet(ctx, JobsStream, directGetRequest{Seq: from, NextFor: wire.QueueFilter(q), Batch: min(maxExamined, 1000)}, func(m *jetstream.RawStreamMsg) bool {
			examined++
			st := statusFromJob(m)
			st.State = JobReady
			if f.matches(st) {
				out = append(out, st)
			}
			return len(out) < f.Limit && examined < maxExamined
		})
		if err != nil || len(out) >= f.Limit {
			return out, err
		}
	}
	return out, nil
}

// recentJobs merges the newest records, the running jobs and the newest
// dead letters.
func (in *Inspector) recentJobs(ctx context.Context, f JobFilter) ([]*JobStatus, error) {
	byID := map[string]*JobStatus{}
	add := func(sts []*JobStatus) {
		for _, st := range sts {
			if old, ok := byID[st.ID]; !ok || st.State == JobRunning || old.State != JobRunning && st.At.After(old.At) {
				byID[st.ID] = st
			}
		}
	}
	running, err := in.runningJobs(ctx, f)
	if err != nil {
		return nil, err
	}
	add(running)
	recorded, err := in.recordedJobs(ctx, f)
	if err != nil {
		return nil, err
	}
	add(recorded)
	dead, err := in.deadJobs(ctx, f)
	if err != nil {
		return nil, err
	}
	add(dead)
	out := make([]*JobStatus, 0, len(byID))
	for _, st := range byID {
		out = append(out, st)
	}
	sortNewest(out, recentTime)
	if len(out) > f.Limit {
		out = out[:f.Limit]
	}
	return out, nil
}

// recentTime is the moment a listing sorts a job by: when it started, for
// a running one, else when its state was recorded.
func recentTime(st *JobStatus) time.Time {
	if st.State == JobRunning && !st.StartedAt.IsZero() {
		return st.StartedAt
	}
	return st.At
}

// jobsOfTag reads the tag's index entries newest first and looks each job
// up (asking the workers once for the running ones).
func (in *Inspector) jobsOfTag(ctx context.Context, f JobFilter) ([]*JobStatus, error) {
	ids, err := in.tagIDs(ctx, f.Tag, maxExamined)
	if err != nil {
		return nil, err
	}
	running, err := in.runningByID(ctx)
	if err != nil {
		return nil, err
	}
	var out []*JobStatus
	for start := 0; start < len(ids) && len(out) < f.Limit; start += 2 * f.Limit {
		chunk := ids[start:min(start+2*f.Limit, len(ids))]
		sts, err := in.lookupMany(ctx, chunk, running)
		if err != nil {
			return nil, err
		}
		for _, st := range sts {
			if st != nil && f.matches(st) && len(out) < f.Limit {
				out = append(out, st)
			}
		}
	}
	return out, nil
}

// tagIDs returns the IDs of tag's index entries, newest first, at most max.
func (in *Inspector) tagIDs(ctx context.Context, tag string, max int) ([]string, error) {
	var ids []string
	err := in.walkBack(ctx, HistoryStream, wire.TagFilter(tag), max, func(m *jetstream.RawStreamMsg) bool {
		var e tagEntry
		if json.Unmarshal(m.Data, &e) == nil && e.ID != "" {
			ids = append(ids, e.ID)
		}
		return len(ids) < max
	})
	return ids, err
}

// lookupMany looks up ids as Job does, eight at a time; an ID no longer
// known gives nil.
func (in *Inspector) lookupMany(ctx context.Context, ids []string, running map[string]*JobStatus) ([]*JobStatus, error) {
	out := make([]*JobStatus, len(ids))
	errs := make([]error, len(ids))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, id := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f, err := in.find(ctx, id)
			if err == nil {
				out[i], err = in.resolve(ctx, f, running)
			}
			if !errors.Is(err, ErrJobNotFound) {
				errs[i] = err
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func sortNewest(sts []*JobStatus, at func(*JobStatus) time.Time) {
	slices.SortStableFunc(sts, func(a, b *JobStatus) int { return at(b).Compare(at(a)) })
}

// walkBack calls fn with the messages of stream on filter, newest first,
// until fn returns false, limit messages were read, or the stream's
// start is reached. It reads backwards in windows of sequences, each with
// batch direct gets that the server answers from its subject index.
func (in *Inspector) walkBack(ctx context.Context, stream, filter string, limit int, fn func(*jetstream.RawStreamMsg) bool) error {
	s, err := in.js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bus: stream %s: %w", stream, err)
	}
	st := s.CachedInfo().State
	if st.Msgs == 0 {
		return nil
	}
	examined := 0
	window := uint64(256)
	for hi := st.LastSeq; hi >= st.FirstSeq && examined < limit; {
		lo := st.FirstSeq
		if hi-lo >= window {
			lo = hi - window + 1
		}
		var found []*jetstream.RawStreamMsg
		for from := lo; from <= hi; {
			last := uint64(0)
			done := false
			err := in.batchGet(ctx, stream, directGetRequest{Seq: from, NextFor: filter, Batch: int(min(hi-from+1, 1000))}, func(m *jetstream.RawStreamMsg) bool {
				if m.Sequence > hi {
					done = true
					return false
				}
				found = append(found, m)
				last = m.Sequence
				return true
			})
			if err != nil {
				return err
			}
			if last == 0 || done {
				break
			}
			from = last + 1
		}
		for i := len(found) - 1; i >= 0; i-- {
			examined++
			if !fn(found[i]) || examined >= limit {
				return nil
			}
		}
		if len(found) == 0 {
			window = min(window*4, maxWindow)
		}
		if lo == st.FirstSeq {
			break
		}
		hi = lo - 1
	}
	return nil
}

// walk calls fn with every message of stream on filter up to sequence
// upTo, in stream order, a thousand per batch direct get.
func (in *Inspector) walk(ctx context.Context, stream, filter string, upTo uint64, fn func(*jetstream.RawStreamMsg)) error {
	for from := uint64(1); from <= upTo; {
		next := uint64(0)
		err := in.batchGet(ctx, stream, directGetRequest{Seq: from, NextFor: filter, Batch: 1000}, func(m *jetstream.RawStreamMsg) bool {
			if m.Sequence > upTo {
				return false
			}
			next = m.Sequence + 1
			fn(m)
			return true
		})
		if err != nil || next == 0 {
			return err
		}
		from = next
	}
	return nil
}

// batchGet sends one batch direct get and calls fn with each message it
// returns, in stream order, until the server's end of batch or fn returns
// false. The stream exists (its callers know it): while no server answers
// it asks again (askAgain), then returns nothing.
func (in *Inspector) batchGet(ctx context.Context, stream string, req directGetRequest, fn func(*jetstream.RawStreamMsg) bool) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	return askAgain(ctx, func() (bool, error) { return in.batchGetOnce(ctx, stream, req, fn) })
}

// batchGetOnce is one try of batchGet; noResponders is true when no
// server answered, before any message.
func (in *Inspector) batchGetOnce(ctx context.Context, stream string, req directGetRequest, fn func(*jetstream.RawStreamMsg) bool) (noResponders bool, err error) {
	nc := in.js.Conn()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return false, fmt.Errorf("bus: read %s: %w", stream, err)
	}
	defer sub.Unsubscribe()
	body, err := json.Marshal(req)
	if err != nil {
		return false, err
	}
	if err := nc.PublishRequest(wire.APIPrefix(in.js)+"DIRECT.GET."+stream, inbox, body); err != nil {
		return false, fmt.Errorf("bus: read %s: %w", stream, err)
	}
	for first := true; ; first = false {
		msg, err := sub.NextMsgWithContext(ctx)
		if errors.Is(err, nats.ErrNoResponders) {
			return first, nil
		}
		if err != nil {
			return false, fmt.Errorf("bus: read %s: %w", stream, err)
		}
		if status := msg.Header.Get("Status"); len(msg.Data) == 0 && status != "" {
			switch status {
			case "503": // no responders
				return first, nil
			case "204", "404": // end of batch, nothing matched
				return false, nil
			}
			return false, fmt.Errorf("bus: read %s: status %s %s", stream, status, msg.Header.Get("Description"))
		}
		m, err := rawFromDirect(msg)
		if err != nil {
			return false, err
		}
		if !fn(m) {
			return false, nil
		}
	}
}
