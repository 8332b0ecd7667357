package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// BatchResult is what became of one job of a batch.
type BatchResult int

// Results a BatchRecorder records.
const (
	// BatchJobSucceeded: the handler returned nil.
	BatchJobSucceeded BatchResult = stateSucceeded
	// BatchJobFailed: the job failed for good (dead-lettered).
	BatchJobFailed BatchResult = stateFailed
	// BatchJobSkipped: the batch was cancelled before the job ran.
	BatchJobSkipped BatchResult = stateSkipped
)

// BatchOutcome is one finished job of a batch.
type BatchOutcome struct {
	// Index is the job's HeaderBatchIndex.
	Index int
	// Result is what became of it.
	Result BatchResult
	// Token is the causal token the job's handler ended with (optional,
	// HeaderCausalToken's form): jobs this outcome releases (callbacks, a
	// chain's next step) carry it.
	Token string
}

// BatchOf returns the batch a job belongs to and its index there, from
// its headers (HeaderBatch, HeaderBatchIndex); ok is false for a job of
// no batch or with a malformed index.
func BatchOf(h nats.Header) (id string, index int, ok bool) {
	id = h.Get(HeaderBatch)
	if id == "" || ValidateBatchID(id) != nil {
		return "", 0, false
	}
	index, err := strconv.Atoi(h.Get(HeaderBatchIndex))
	if err != nil || index < 0 || index >= MaxBatchJobs {
		return "", 0, false
	}
	return id, index, true
}

// BatchRecorder records the outcomes of batch jobs in their batch's
// state, as workers do after running a job and before acknowledging it,
// and releases the callbacks a batch's completion calls for. A program
// that runs jobs itself, instead of package workers, records through it
// to take part in batches. It caches what it learns of each batch, so
// use one per process. It is safe for concurrent use.
//
// Exactly once: a job's outcome sets its two bits in its chunk with a
// compare-and-set, so recording it again (a redelivery after a crash, two
// workers) changes nothing; the change of the summary that completes a
// chunk, sees the first failure or finishes the batch is a compare-and-set
// published in one atomic batch with the callbacks it releases, so
// exactly one writer releases each callback, and it is released if and
// only if the change is stored. A worker killed after running a job and
// before recording it has not acknowledged it either: the job is
// delivered again and recorded then.
type BatchRecorder struct {
	st batchStore

	mu      sync.Mutex
	batches map[string]*recBatch
	sub     *nats.Subscription
}

// recBatch is what a recorder knows of one batch.
type recBatch struct {
	mu         sync.Mutex // serializes Record for the batch
	chunks     map[int]*recChunk
	sizes      []int  // jobs per chunk, from the summary
	done       []bool // chunks the summary knows done
	failedSeen bool
	finished   bool

	cancelled bool      // guarded by the recorder's mu
	checkedAt time.Time // when cancelled was read
	lastUse   time.Time
}

// recChunk is a chunk as last read or written, with its sequence.
type recChunk struct {
	seq  uint64
	bits chunk
}

// maxRecorded bounds the batches a recorder remembers.
const maxRecorded = 4096

// cancelCheckEvery is how long a recorder trusts a batch's "not
// cancelled" before reading it again; a cancel is also announced on
// BatchCancelledSubject, which takes effect at once.
const cancelCheckEvery = time.Second

// NewBatchRecorder returns a recorder working through js.
func NewBatchRecorder(js jetstream.JetStream, cfg Config) *BatchRecorder {
	return &BatchRecorder{st: batchStore{js: js, cfg: cfg.withDefaults()}, batches: map[string]*recBatch{}}
}

// Close stops listening for cancels.
func (r *BatchRecorder) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sub != nil {
		_ = r.sub.Unsubscribe()
		r.sub = nil
	}
}

// entry returns what the recorder knows of batch id.
func (r *BatchRecorder) entry(id string) *recBatch {
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.batches[id]
	if b == nil {
		if len(r.batches) >= maxRecorded {
			r.evictLocked()
		}
		b = &recBatch{chunks: map[int]*recChunk{}}
		r.batches[id] = b
	}
	b.lastUse = time.Now()
	return b
}

// evictLocked forgets the least recently used batch.
func (r *BatchRecorder) evictLocked() {
	var oldest string
	var at time.Time
	for id, b := range r.batches {
		if oldest == "" || b.lastUse.Before(at) {
			oldest, at = id, b.lastUse
		}
	}
	delete(r.batches, oldest)
}

// Cancelled reports whether batch id was cancelled, so that its pending
// jobs are skipped (recorded BatchJobSkipped without running). An unknown
// batch is not cancelled.
func (r *BatchRecorder) Cancelled(ctx context.Context, id string) (bool, error) {
	r.mu.Lock()
	if r.sub == nil {
		r.listenLocked()
	}
	b := r.batches[id]
	if b != nil && (b.cancelled || time.Since(b.checkedAt) < cancelCheckEvery) {
		defer r.mu.Unlock()
		return b.cancelled, nil
	}
	r.mu.Unlock()
	b = r.entry(id)
	sum, _, err := r.st.sum(ctx, id)
	if errors.Is(err, ErrUnknownBatch) {
		sum, err = &batchSum{}, nil
	}
	if err != nil {
		return false, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b.cancelled = b.cancelled || sum.Cancelled
	b.checkedAt = time.Now()
	return b.cancelled, nil
}

// listenLocked subscribes to cancel announcements; r.mu is held.
func (r *BatchRecorder) listenLocked() {
	sub, err := r.st.js.Conn().Subscribe(BatchCancelledSubject, func(m *nats.Msg) {
		id := string(m.Data)
		if ValidateBatchID(id) != nil {
			return
		}
		b := r.entry(id)
		r.mu.Lock()
		b.cancelled = true
		r.mu.Unlock()
	})
	if err == nil {
		r.sub = sub
	}
}

// Record records outcomes of batch id's jobs. It returns once they are
// stored (and any callback they release is), or with an error: then
// nothing may be acknowledged, and the jobs are recorded when they are
// delivered again. A batch that expired or finished records nothing: the
// error wraps ErrUnknownBatch for the former, and is nil for the latter.
func (r *BatchRecorder) Record(ctx context.Context, id string, outcomes ...BatchOutcome) error {
	b := r.entry(id)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.finished {
		return nil
	}
	byChunk := map[int][]BatchOutcome{}
	last := 0
	for _, o := range outcomes {
		if o.Index < 0 || o.Index >= MaxBatchJobs || o.Result < BatchJobSucceeded || o.Result > BatchJobSkipped {
			return fmt.Errorf("%w: batch %s: outcome %+v", ErrInvalid, id, o)
		}
		c := o.Index / BatchChunkSize
		byChunk[c] = append(byChunk[c], o)
		last = max(last, c)
	}
	if last >= len(b.sizes) {
		if err := r.refresh(ctx, id, b); err != nil {
			return err
		}
		if b.finished {
			return nil
		}
		if last >= len(b.sizes) {
			return fmt.Errorf("%w: batch %s has %d chunks; a job claims chunk %d", ErrInvalid, id, len(b.sizes), last)
		}
	}
	settle := false
	var tokens []string
	for c, outs := range byChunk {
		if err := r.recordChunk(ctx, id, b, c, outs); err != nil {
			return err
		}
		counts, done := b.chunks[c].bits.counts(b.sizes[c])
		settle = settle || done && !b.done[c] || counts.Failed > 0 && !b.failedSeen
		for _, o := range outs {
			if o.Token != "" {
				tokens = append(tokens, o.Token)
			}
		}
	}
	if !settle {
		return nil
	}
	sum, err := r.st.updateSum(ctx, id, nil, func(s *batchSum) bool {
		changed := false
		for c := range byChunk {
			if c >= len(s.Chunks) {
				continue
			}
			counts, done := b.chunks[c].bits.counts(s.Chunks[c])
			if done && s.Done[c] == nil {
				s.Done[c], changed = &counts, true
			}
			if counts.Failed > 0 && !s.FailedSeen {
				s.FailedSeen, changed = true, true
			}
		}
		return changed
	}, tokens...)
	if err != nil {
		return err
	}
	b.learn(sum)
	return nil
}

// refresh reads batch id's summary into b.
func (r *BatchRecorder) refresh(ctx context.Context, id string, b *recBatch) error {
	sum, _, err := r.st.sum(ctx, id)
	if err != nil {
		return err
	}
	b.learn(sum)
	return nil
}

// learn takes what sum says into b.
func (b *recBatch) learn(sum *batchSum) {
	b.sizes = sum.Chunks
	b.done = make([]bool, len(sum.Chunks))
	for i := range b.done {
		b.done[i] = i < len(sum.Done) && sum.Done[i] != nil
	}
	b.failedSeen = sum.FailedSeen
	b.finished = sum.Finished
}

// recordChunk sets the outcomes' bits in chunk c with a compare-and-set,
// reading the chunk again after a concurrent change.
func (r *BatchRecorder) recordChunk(ctx context.Context, id string, b *recBatch, c int, outs []BatchOutcome) error {
	for range maxCASTries {
		cur := b.chunks[c]
		if cur == nil {
			m, err := lastOnSubject(ctx, r.st.js, JobsStream, chunkSubject(id, c))
			if err != nil {
				return err
			}
			cur = &recChunk{bits: newChunk()}
			if m != nil {
				cur.seq = m.Seq
				copy(cur.bits, m.Data)
			}
			b.chunks[c] = cur
		}
		next := append(chunk(nil), cur.bits...)
		changed := false
		for _, o := range outs {
			if i := o.Index % BatchChunkSize; next.get(i) == statePending {
				next.set(i, int(o.Result))
				changed = true
			}
		}
		if !changed {
			return nil
		}
		msg := &nats.Msg{Subject: chunkSubject(id, c), Header: casHeader(cur.seq, r.st.cfg.BatchRetention), Data: next}
		seq, err := requestPublish(ctx, r.st.js.Conn(), msg)
		if errors.Is(err, errConflict) {
			delete(b.chunks, c)
			continue
		}
		if err != nil {
			return fmt.Errorf("bus: record jobs of batch %s: %w", id, err)
		}
		b.chunks[c] = &recChunk{seq: seq, bits: next}
		return nil
	}
	return fmt.Errorf("bus: batch %s: chunk %d kept changing under %d tries", id, c, maxCASTries)
}
