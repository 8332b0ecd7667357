package bus

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// BatchState is where a batch is in its life.
type BatchState string

// Batch states.
const (
	// BatchDispatching: a batch larger than one atomic publish whose jobs
	// are still being stored; it cannot finish yet.
	BatchDispatching BatchState = "dispatching"
	// BatchRunning: its jobs are stored and some have not finished.
	BatchRunning BatchState = "running"
	// BatchCancelling: cancelled; its pending jobs are skipped as workers
	// meet them.
	BatchCancelling BatchState = "cancelling"
	// BatchSucceeded: every job finished, none failed.
	BatchSucceeded BatchState = "succeeded"
	// BatchFailed: every job finished, some failed, whether or not
	// failures were allowed (AllowFailures decides which callback runs,
	// not the state).
	BatchFailed BatchState = "failed"
	// BatchCancelled: cancelled, or some of its jobs were (and none
	// failed), and every job finished or was skipped.
	BatchCancelled BatchState = "cancelled"
)

// BatchStatus is a batch as operators see it: `jetfleet queue batch`,
// the dashboard, /metrics.
type BatchStatus struct {
	ID    string
	Name  string
	State BatchState
	// Total is how many jobs the batch holds; Pending how many have not
	// finished; Succeeded, Failed and Skipped (cancelled before they ran)
	// the others.
	Total, Pending, Succeeded, Failed, Skipped int
	// AllowFailures is the batch's option.
	AllowFailures bool
	// Cancelled says it was cancelled, and CancelReason why.
	Cancelled    bool
	CancelReason string
	// CreatedAt is when it was dispatched; FinishedAt when its last job
	// finished (zero until then).
	CreatedAt, FinishedAt time.Time
	// Callbacks are its then, catch and finally jobs, and whether each was
	// dispatched.
	Callbacks []BatchCallback
	// Chain, Step and Steps place a chain's step (Chain is "" otherwise).
	Chain       string
	Step, Steps int
}

// BatchCallback is one callback of a batch.
type BatchCallback struct {
	// Name is then, catch or finally.
	Name string
	// ID, Queue and Kind are the callback job's; Queue and Kind are empty
	// for a chain's next step, whose Kind says "step N".
	ID, Queue, Kind string
	// Released says it was dispatched.
	Released bool
}

// Done reports whether every job of the batch has finished.
func (s BatchStatus) Done() bool {
	return s.State == BatchSucceeded || s.State == BatchFailed || s.State == BatchCancelled
}

// Batch returns batch id's status: its summary and definition read from
// the stream's leader, and exact counts from its chunks. An unknown or
// expired ID is an error wrapping ErrUnknownBatch.
func (in *Inspector) Batch(ctx context.Context, id string) (BatchStatus, error) {
	if err := ValidateBatchID(id); err != nil {
		return BatchStatus{}, err
	}
	st := &batchStore{js: in.js, cfg: in.cfg}
	sum, _, err := st.sum(ctx, id)
	if err != nil {
		return BatchStatus{}, err
	}
	def, err := st.def(ctx, id)
	if err != nil {
		return BatchStatus{}, err
	}
	chunks, err := in.batchChunks(ctx, id)
	if err != nil {
		return BatchStatus{}, err
	}
	return batchStatus(def, sum, chunks), nil
}

// batchChunks reads the chunks of batch id that hold any outcome.
func (in *Inspector) batchChunks(ctx context.Context, id string) (map[int]chunk, error) {
	msgs, err := lastPerSubject(ctx, in.js, JobsStream, BatchPrefix+"."+id+".c.*")
	if err != nil {
		return nil, err
	}
	out := map[int]chunk{}
	for _, m := range msgs {
		subj := m.Header.Get("Nats-Subject")
		n, err := strconv.Atoi(subj[strings.LastIndexByte(subj, '.')+1:])
		if err != nil {
			continue
		}
		c := newChunk()
		copy(c, m.Data)
		out[n] = c
	}
	return out, nil
}

// batchStatus puts a batch's parts together.
func batchStatus(def *batchDef, sum *batchSum, chunks map[int]chunk) BatchStatus {
	s := BatchStatus{
		ID: def.ID, Name: cmp.Or(def.Name, sum.Name), Total: sum.Total, AllowFailures: def.AllowFailures,
		Cancelled: sum.Cancelled, CancelReason: sum.CancelReason, CreatedAt: sum.CreatedAt, FinishedAt: sum.FinishedAt,
	}
	if def.Chain != nil {
		s.Chain, s.Step, s.Steps = def.Chain.ID, def.Chain.Step, def.Chain.Steps
	}
	for i, n := range sum.Chunks {
		var cc chunkCounts
		switch {
		case i < len(sum.Done) && sum.Done[i] != nil:
			cc = *sum.Done[i]
		case chunks[i] != nil:
			cc, _ = chunks[i].counts(n)
		}
		s.Succeeded += cc.Succeeded
		s.Failed += cc.Failed
		s.Skipped += cc.Skipped
	}
	s.Pending = s.Total - s.Succeeded - s.Failed - s.Skipped
	switch {
	case sum.Finished && sum.Cancelled:
		s.State = BatchCancelled
	case sum.Finished && s.Failed > 0:
		s.State = BatchFailed
	case sum.Finished && s.Skipped > 0: // some of its jobs were cancelled
		s.State = BatchCancelled
	case sum.Finished:
		s.State = BatchSucceeded
	case sum.Cancelled:
		s.State = BatchCancelling
	case !sum.Sealed:
		s.State = BatchDispatching
	default:
		s.State = BatchRunning
	}
	s.Callbacks = batchCallbacks(def, sum, chunkCounts{Failed: s.Failed, Skipped: s.Skipped})
	return s
}

// batchCallbacks lists what a batch releases as it advances (advance):
// then when it succeeds; catch at its first failure; finally when it
// ends. A chain's step also holds the chain's callbacks: the last step's
// then holds the chain's then and finally, and every step releases the
// chain's finally if it fails (OnFailure). Each is named as its job's
// Jetfleet-Callback header says, and listed once.
func batchCallbacks(def *batchDef, sum *batchSum, ended chunkCounts) []BatchCallback {
	then := sum.Finished && thenReleased(def, sum, ended)
	var out []BatchCallback
	for _, cb := range []struct {
		name     string
		msgs     []flowMsg
		released bool
	}{
		{CallbackThen, def.Then, then},
		{CallbackCatch, def.Catch, sum.CatchFired},
		{CallbackFinally, def.OnFailure, sum.Finished && !then},
		{CallbackFinally, def.Finally, sum.Finished},
	} {
		for _, m := range cb.msgs {
			// A chain's next step is its definition; its summary and jobs
			// are not callbacks of their own.
			if isBatchSubject(m.Subject) && !strings.HasSuffix(m.Subject, ".def") || m.Header.Get(HeaderBatch) != "" {
				continue
			}
			c := callbackOf(cmp.Or(m.Header.Get(HeaderCallback), cb.name), m, cb.released)
			if i := slices.IndexFunc(out, func(o BatchCallback) bool { return o.Name == c.Name && o.ID == c.ID }); i >= 0 {
				out[i].Released = out[i].Released || c.Released
				continue
			}
			out = append(out, c)
		}
	}
	return out
}

func callbackOf(name string, m flowMsg, released bool) BatchCallback {
	cb := BatchCallback{Name: name, Released: released, ID: m.Header.Get(HeaderJobID)}
	if cb.ID == "" {
		cb.ID = m.Header.Get(HeaderMsgID)
	}
	subject := m.Subject
	if t := m.Header.Get(headerScheduleTarget); t != "" {
		subject = t
	}
	if q, k, err := wire.ParseJobSubject(subject); err == nil {
		cb.Queue, cb.Kind = q, k
	} else if isBatchSubject(subject) {
		cb.ID = strings.TrimSuffix(strings.TrimPrefix(subject, BatchPrefix+"."), ".def")
		cb.Kind = "next step"
	}
	return cb
}

// MaxListedBatches is how many batches Batches returns at most: the
// newest.
const MaxListedBatches = 1024

// Batches lists the batches JOBS holds (those changed within
// Config.BatchRetention), newest first, at most MaxListedBatches of them,
// with exact counts: every batch's summary is read (a thousand per
// direct get), and the chunks of each listed batch that has not finished.
// The callbacks are not listed (Batch has them).
func (in *Inspector) Batches(ctx context.Context) ([]BatchStatus, error) {
	msgs, err := in.batchSums(ctx)
	if err != nil {
		return nil, err
	}
	type listed struct {
		id  string
		sum batchSum
	}
	all := make([]listed, 0, len(msgs))
	for subject, m := range msgs {
		var l listed
		if json.Unmarshal(m.Data, &l.sum) != nil {
			continue
		}
		l.id = strings.TrimSuffix(strings.TrimPrefix(subject, BatchPrefix+"."), ".sum")
		all = append(all, l)
	}
	slices.SortFunc(all, func(a, b listed) int { return b.sum.CreatedAt.Compare(a.sum.CreatedAt) })
	out := make([]BatchStatus, 0, min(len(all), MaxListedBatches))
	for _, l := range all[:min(len(all), MaxListedBatches)] {
		for len(l.sum.Done) < len(l.sum.Chunks) {
			l.sum.Done = append(l.sum.Done, nil)
		}
		var chunks map[int]chunk
		if !l.sum.Finished {
			if chunks, err = in.batchChunks(ctx, l.id); err != nil {
				return nil, err
			}
		}
		out = append(out, batchStatus(&batchDef{ID: l.id}, &l.sum, chunks))
	}
	return out, nil
}

// batchSums reads every batch's summary by its subject, walking the
// batches.*.sum messages of JOBS in order, a thousand per direct get.
// Each summary write rolls up the one before, so the stream holds one per
// batch; one rewritten during the walk may be met twice, and the later
// read wins.
func (in *Inspector) batchSums(ctx context.Context) (map[string]*jetstream.RawStreamMsg, error) {
	out := map[string]*jetstream.RawStreamMsg{}
	err := in.walk(ctx, JobsStream, BatchPrefix+".*.sum", math.MaxUint64, func(m *jetstream.RawStreamMsg) { out[m.Subject] = m })
	if err != nil {
		return nil, fmt.Errorf("bus: list batches: %w", err)
	}
	return out, nil
}

// BatchJobState is one job of a batch and what became of it.
type BatchJobState struct {
	// Index is its place in the batch (HeaderBatchIndex); ID its job ID
	// unless the dispatcher chose another with JobID.
	Index int
	ID    string
	// State is pending, succeeded, failed or skipped.
	State string
}

// BatchJobs lists the jobs of batch id in the given states ("pending",
// "succeeded", "failed", "skipped"; none: all), at most limit of them (0:
// no limit), by index.
func (in *Inspector) BatchJobs(ctx context.Context, id string, limit int, states ...string) ([]BatchJobState, error) {
	st := &batchStore{js: in.js, cfg: in.cfg}
	sum, _, err := st.sum(ctx, id)
	if err != nil {
		return nil, err
	}
	chunks, err := in.batchChunks(ctx, id)
	if err != nil {
		return nil, err
	}
	names := [...]string{"pending", "succeeded", "failed", "skipped"}
	var out []BatchJobState
	for c, n := range sum.Chunks {
		for i := range n {
			state := statePending
			if ch := chunks[c]; ch != nil {
				state = ch.get(i)
			}
			if len(states) > 0 && !slices.Contains(states, names[state]) {
				continue
			}
			idx := c*BatchChunkSize + i
			out = append(out, BatchJobState{Index: idx, ID: id + "-" + strconv.Itoa(idx), State: names[state]})
			if limit > 0 && len(out) == limit {
				return out, nil
			}
		}
	}
	return out, nil
}

// CancelBatch cancels batch id (or the running step of chain id): workers skip its jobs that have not
// started (recorded as skipped, never run), jobs already running finish,
// then and catch are not dispatched, and finally is, once every job has
// finished or been skipped. A finished batch cannot be cancelled
// (ErrBatchFinished); cancelling twice changes nothing.
func (in *Inspector) CancelBatch(ctx context.Context, id string) error {
	if err := ValidateBatchID(id); err != nil {
		return err
	}
	st := &batchStore{js: in.js, cfg: in.cfg}
	err := st.cancel(ctx, id, "cancelled by an operator")
	if errors.Is(err, ErrUnknownBatch) && len(id) <= maxChainID {
		return in.cancelChain(ctx, st, id)
	}
	if err != nil && !errors.Is(err, ErrBatchFinished) {
		return fmt.Errorf("bus: cancel batch %s: %w", id, err)
	}
	return err
}

// cancelChain cancels the step of chain id that runs now: its pending
// jobs are skipped and no later step is dispatched. A step that finishes
// between the read of the chain and its cancel has released the next
// one (in the same atomic write): the chain is read again and that one
// cancelled. The chain has finished only when the last step it holds
// was read finished: a step's successor is stored before the step reads
// as finished, and Chain reads the steps in order.
func (in *Inspector) cancelChain(ctx context.Context, st *batchStore, id string) error {
	// Each round either ends or finds the chain a step further on; the
	// bound only stops a broken server from looping.
	for range maxCASTries {
		steps, err := in.Chain(ctx, id)
		if err != nil {
			return fmt.Errorf("bus: cancel chain %s: %w", id, err)
		}
		last := steps[len(steps)-1]
		if last.Done() {
			return fmt.Errorf("bus: cancel chain %s: %w", id, ErrBatchFinished)
		}
		err = st.cancel(ctx, last.ID, "chain cancelled by an operator")
		if !errors.Is(err, ErrBatchFinished) {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("bus: cancel chain %s: %w", id, err)
		}
	}
	return fmt.Errorf("bus: cancel chain %s: its steps kept finishing under %d tries", id, maxCASTries)
}
