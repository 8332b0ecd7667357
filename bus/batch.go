package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// Batches (Laravel's Bus::batch, Sidekiq Pro batches): jobs dispatched
// together whose progress is tracked, with callbacks that run exactly once
// when all of them succeeded (then), on the first that failed for good
// (catch), and when every one has finished either way (finally).
//
// A batch lives in the JOBS stream beside its jobs, under batches.<id>:
//
//	batches.<id>.def     its definition: name, options and the callback
//	                     messages, written once
//	batches.<id>.sum     its summary: total, the job count of each chunk,
//	                     which chunks are done, whether it is sealed,
//	                     cancelled, finished, and whether catch fired
//	batches.<id>.c.<n>   chunk n: two bits per job (pending, succeeded,
//	                     failed, skipped) for jobs n*4096 to n*4096+4095
//
// Every write of the summary or of a chunk is a compare-and-set
// (Nats-Expected-Last-Subject-Sequence) that replaces the previous value
// (Nats-Rollup: sub) and expires after Config.BatchRetention (Nats-TTL).
// A job is recorded by setting its two bits, which is idempotent: a job run
// twice, or recorded by a worker killed before its ack and then by another,
// counts once. The change of the summary that finishes a batch (or first
// sees a failure) is published in one atomic batch with the callback jobs
// it releases: the callbacks are stored if and only if that change is, and
// the compare-and-set lets exactly one writer make it.

// BatchPrefix starts the subjects of batches' state in JobsStream:
// batches.<id>.def, batches.<id>.sum and batches.<id>.c.<chunk>.
const BatchPrefix = "batches"

// Headers of batch jobs and callbacks (docs/wire-contract.md).
const (
	// HeaderBatch is the ID of the batch a job belongs to.
	HeaderBatch = "Jetfleet-Batch"
	// HeaderBatchIndex is the job's place in its batch: chunk*4096 +
	// position in the chunk (BatchChunkSize).
	HeaderBatchIndex = "Jetfleet-Batch-Index"
	// HeaderCallbackOf is the ID of the batch whose callback a job is.
	HeaderCallbackOf = "Jetfleet-Callback-Of"
	// HeaderCallback says which callback a job is: then, catch or finally.
	HeaderCallback = "Jetfleet-Callback"
	// HeaderChain is the ID of the chain a step's jobs and callbacks
	// belong to.
	HeaderChain = "Jetfleet-Chain"
)

// BatchChunkSize is how many jobs one chunk subject of a batch records.
const BatchChunkSize = 4096

// MaxBatchJobs caps the jobs of one batch: 1,024 chunks.
const MaxBatchJobs = 1024 * BatchChunkSize

// BatchCancelledSubject is where a cancelled batch's ID is announced (core
// NATS, not stored), so that workers skip its jobs at once.
const BatchCancelledSubject = "jetfleet.events.batch.cancelled"

// AtomicBatchLimit is the most messages one atomic publish may hold: the
// default of nats-server's max_batch_size (JetStream limits). A batch of
// at most AtomicBatchLimit-2 jobs is stored with its definition and
// summary in one atomic publish.
const AtomicBatchLimit = 1000

// Errors callers of batches branch on.
var (
	// ErrUnknownBatch is wrapped when no batch has the given ID (or it
	// expired).
	ErrUnknownBatch = errors.New("no batch with this ID")
	// ErrBatchFinished is wrapped when a batch cannot change because it
	// has finished.
	ErrBatchFinished = errors.New("the batch has finished")
	// ErrBatchCancelled is wrapped when jobs are added to a cancelled batch.
	ErrBatchCancelled = errors.New("the batch is cancelled")
	// ErrBatchIncomplete is wrapped when a batch larger than one atomic
	// publish could not be stored whole: it is cancelled, so its jobs
	// already stored do not run (those already running finish).
	ErrBatchIncomplete = errors.New("batch not stored whole; it is cancelled")
)

// Callback names, as HeaderCallback gives them.
const (
	CallbackThen    = "then"
	CallbackCatch   = "catch"
	CallbackFinally = "finally"
)

// BatchOption sets an option of a batch or a chain.
type BatchOption func(*batchOptions)

type callback struct {
	name string
	args Args
	opts []Option
}

type batchOptions struct {
	id            string
	name          string
	allowFailures bool
	callbacks     []callback
}

// Then adds a job to dispatch, exactly once, when every job of the batch
// succeeded (or finished, with AllowFailures). For a chain: after its last
// step.
func Then(args Args, opts ...Option) BatchOption {
	return func(o *batchOptions) { o.callbacks = append(o.callbacks, callback{CallbackThen, args, opts}) }
}

// Catch adds a job to dispatch, exactly once, when the first job of the
// batch fails for good (its tries used up, or a permanent error), unless
// the batch allows failures. For a chain: when a step fails.
func Catch(args Args, opts ...Option) BatchOption {
	return func(o *batchOptions) { o.callbacks = append(o.callbacks, callback{CallbackCatch, args, opts}) }
}

// Finally adds a job to dispatch, exactly once, when every job of the
// batch has finished, succeeded or failed (or was skipped by a cancel).
// For a chain: when the chain ends, at its last step or at a failure.
func Finally(args Args, opts ...Option) BatchOption {
	return func(o *batchOptions) { o.callbacks = append(o.callbacks, callback{CallbackFinally, args, opts}) }
}

// AllowFailures makes failed jobs no reason for catch: then runs once
// every job has finished, whatever failed. Refused for chains.
func AllowFailures() BatchOption { return func(o *batchOptions) { o.allowFailures = true } }

// BatchName names the batch in listings (at most 200 bytes).
func BatchName(name string) BatchOption { return func(o *batchOptions) { o.name = name } }

// BatchID sets the batch's (or chain's) ID instead of a random one:
// [A-Za-z0-9_-], at most 64 bytes. Dispatching a batch with an ID that
// exists already is refused, so a retried dispatch stores nothing twice.
func BatchID(id string) BatchOption { return func(o *batchOptions) { o.id = id } }

// ValidateBatchID checks a batch or chain ID: [A-Za-z0-9_-], 1 to 64 bytes.
func ValidateBatchID(id string) error {
	ok := id != "" && len(id) <= 64
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
	}
	if !ok {
		return fmt.Errorf("%w: batch ID %q: want 1 to 64 of A-Z, a-z, 0-9, _ and -", ErrInvalid, id)
	}
	return nil
}

// Batch is a dispatched batch.
type Batch struct {
	// ID identifies the batch: Inspector.Batch, `jetfleet queue batch <id>`.
	ID string
	// JobIDs are the IDs of its jobs, aligned with the jobs given: by
	// default "<batch ID>-<index>".
	JobIDs []string
}

func defSubject(id string) string          { return BatchPrefix + "." + id + ".def" }
func sumSubject(id string) string          { return BatchPrefix + "." + id + ".sum" }
func chunkSubject(id string, c int) string { return BatchPrefix + "." + id + ".c." + strconv.Itoa(c) }

// ensureBatchStream makes sure JOBS can hold batches: the batches.>
// subjects, atomic publish and per-message TTLs. A JOBS stream created by
// an older jetfleet lacks them; they are added in place (nothing else
// changes), once per process.
func (d *Dispatcher) ensureBatchStream(ctx context.Context) error {
	d.batchReady.mu.Lock()
	defer d.batchReady.mu.Unlock()
	if d.batchReady.ok {
		return nil
	}
	if err := ensureBatchStream(ctx, d.js); err != nil {
		return err
	}
	d.batchReady.ok = true
	return nil
}

// batchReady remembers that JOBS is ready for batches.
type batchReady struct {
	mu sync.Mutex
	ok bool
}

func ensureBatchStream(ctx context.Context, js jetstream.JetStream) error {
	s, err := js.Stream(ctx, JobsStream)
	if err != nil {
		return fmt.Errorf("bus: batches need the %s stream: %w", JobsStream, err)
	}
	cfg := s.CachedInfo().Config
	if slices.Contains(cfg.Subjects, BatchPrefix+".>") && cfg.AllowAtomicPublish && cfg.AllowMsgTTL {
		return nil
	}
	if !slices.Contains(cfg.Subjects, BatchPrefix+".>") {
		cfg.Subjects = append(cfg.Subjects, BatchPrefix+".>")
	}
	cfg.AllowAtomicPublish, cfg.AllowMsgTTL = true, true
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("bus: enable batches on %s (subjects %s.>, atomic publish, message TTLs; nats-server 2.12 or later): %w", JobsStream, BatchPrefix, err)
	}
	return nil
}

// Batch dispatches jobs as one batch and returns its ID and its jobs' IDs.
// The jobs may go to any queues, with any options; opts add callbacks
// (Then, Catch, Finally) and options (AllowFailures, BatchName, BatchID).
// Callbacks are ordinary jobs, run by whatever worker serves their queue.
//
// A batch of at most AtomicBatchLimit-2 (998) jobs is stored atomically
// with its state: when Batch fails, nothing was stored and nothing runs.
// A larger batch is stored in two steps: its state and first 998 jobs
// atomically, then the others with asynchronous publishes, then it is
// sealed (it can finish only once sealed). If that second step fails,
// the batch is cancelled, so its jobs already stored are skipped (any that
// already started finish), no callback runs, and the error wraps
// ErrBatchIncomplete. A process killed in that second step leaves a batch
// that never finishes (`jetfleet queue cancel --batch` ends it).
func (d *Dispatcher) Batch(ctx context.Context, jobs []DispatchManyParams, opts ...BatchOption) (*Batch, error) {
	var o batchOptions
	for _, opt := range opts {
		opt(&o)
	}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("%w: a batch needs at least one job", ErrInvalid)
	}
	def, err := d.newBatchDef(ctx, &o, nil)
	if err != nil {
		return nil, err
	}
	if err := d.ensureBatchStream(ctx); err != nil {
		return nil, err
	}
	set, err := d.batchJobs(ctx, def.ID, 0, jobs, "")
	if err != nil {
		return nil, err
	}
	head, rest := splitAtomic(set.msgs, AtomicBatchLimit-2)
	sum := newSum(len(jobs), len(rest) == 0)
	sum.Name = def.Name
	first, err := d.createMsgs(def, sum)
	if err != nil {
		return nil, err
	}
	if _, err := publishAtomic(ctx, d.js.Conn(), append(first, head...)); err != nil {
		return nil, d.batchCreateError(def.ID, err)
	}
	d.dispatchedAll(head)
	b := &Batch{ID: def.ID, JobIDs: set.ids}
	if len(rest) == 0 {
		return b, nil
	}
	errs := make([]error, len(rest))
	d.publishAll(ctx, rest, errs)
	if err := batchError(errs); err != nil {
		cerr := d.cancelBatch(context.WithoutCancel(ctx), def.ID, "dispatch failed: "+err.Error())
		return b, errors.Join(fmt.Errorf("bus: batch %s: %w: %w", def.ID, ErrBatchIncomplete, err), cerr)
	}
	st := &batchStore{js: d.js, cfg: d.cfg}
	if _, err := st.updateSum(ctx, def.ID, nil, func(s *batchSum) bool {
		if s.Sealed {
			return false
		}
		s.Sealed = true
		return true
	}); err != nil {
		return b, fmt.Errorf("bus: seal batch %s: %w", def.ID, err)
	}
	return b, nil
}

// splitAtomic splits msgs after n.
func splitAtomic(msgs []*nats.Msg, n int) (head, rest []*nats.Msg) {
	if len(msgs) <= n {
		return msgs, nil
	}
	return msgs[:n], msgs[n:]
}

// batchCreateError explains why an atomic creation failed.
func (d *Dispatcher) batchCreateError(id string, err error) error {
	switch {
	case errors.Is(err, errConflict):
		return fmt.Errorf("%w: batch %s exists already", ErrInvalid, id)
	case errors.Is(err, errDuplicate):
		return fmt.Errorf("%w: batch %s: a job ID of the batch was stored already within the duplicate window: %w", ErrInvalid, id, err)
	}
	return notAcked("batch "+id, err)
}

// createMsgs are the messages that create a batch: its definition and
// first summary, each stored only if its subject is empty.
func (d *Dispatcher) createMsgs(def *batchDef, sum *batchSum) ([]*nats.Msg, error) {
	defBody, err := json.Marshal(def)
	if err != nil {
		return nil, fmt.Errorf("bus: encode batch: %w", err)
	}
	sumBody, err := json.Marshal(sum)
	if err != nil {
		return nil, fmt.Errorf("bus: encode batch: %w", err)
	}
	ttl := d.cfg.BatchRetention
	msgs := []*nats.Msg{
		{Subject: defSubject(def.ID), Header: casHeader(0, ttl), Data: defBody},
		{Subject: sumSubject(def.ID), Header: casHeader(0, ttl), Data: sumBody},
	}
	for _, m := range msgs {
		if err := d.checkSize(m); err != nil {
			return nil, fmt.Errorf("batch %s: its definition with the callbacks: %w", def.ID, err)
		}
	}
	return msgs, nil
}

// newBatchDef checks the options and builds the definition, with its
// callback jobs encoded now (with ctx's headers).
func (d *Dispatcher) newBatchDef(ctx context.Context, o *batchOptions, chain *chainRef) (*batchDef, error) {
	if o.id == "" {
		o.id = nuid.Next()
	}
	if err := ValidateBatchID(o.id); err != nil {
		return nil, err
	}
	if len(o.name) > 200 {
		return nil, fmt.Errorf("%w: batch name is %d bytes; the limit is 200", ErrInvalid, len(o.name))
	}
	def := &batchDef{ID: o.id, Name: o.name, CreatedAt: time.Now().UTC(), AllowFailures: o.allowFailures, Chain: chain}
	seen := map[string]int{}
	for _, cb := range o.callbacks {
		if cb.args == nil {
			return nil, fmt.Errorf("%w: %s callback of batch %s has nil args", ErrInvalid, cb.name, o.id)
		}
		id := o.id + "-" + cb.name
		if n := seen[cb.name]; n > 0 {
			id += "-" + strconv.Itoa(n)
		}
		seen[cb.name]++
		msg, _, err := d.encode(ctx, cb.args, append([]Option{JobID(id)}, cb.opts...))
		if err == nil {
			err = noUniqueInBatch(cb.opts)
		}
		if err != nil {
			return nil, fmt.Errorf("%s callback of batch %s: %w", cb.name, o.id, err)
		}
		msg.Header.Set(HeaderCallbackOf, o.id)
		msg.Header.Set(HeaderCallback, cb.name)
		if chain != nil {
			msg.Header.Set(HeaderChain, chain.ID)
		}
		fm := flowMsg{Subject: msg.Subject, Header: msg.Header, Body: msg.Data}
		switch cb.name {
		case CallbackThen:
			def.Then = append(def.Then, fm)
		case CallbackCatch:
			def.Catch = append(def.Catch, fm)
		default:
			def.Finally = append(def.Finally, fm)
		}
	}
	return def, nil
}

// jobSet is a batch's job messages and their IDs.
type jobSet struct {
	msgs []*nats.Msg
	ids  []string
}

// batchJobs encodes jobs as members of batch id, from index first on.
func (d *Dispatcher) batchJobs(ctx context.Context, id string, first int, jobs []DispatchManyParams, chain string) (jobSet, error) {
	if first+len(jobs) > MaxBatchJobs {
		return jobSet{}, fmt.Errorf("%w: batch %s would hold %d jobs; the limit is %d", ErrInvalid, id, first+len(jobs), MaxBatchJobs)
	}
	set := jobSet{msgs: make([]*nats.Msg, len(jobs)), ids: make([]string, len(jobs))}
	for i, p := range jobs {
		if p.Args == nil {
			return jobSet{}, fmt.Errorf("%w: job %d of batch %s has nil args", ErrInvalid, i, id)
		}
		idx := strconv.Itoa(first + i)
		msg, jobID, err := d.encode(ctx, p.Args, append([]Option{JobID(id + "-" + idx)}, p.Opts...))
		if err == nil {
			err = noUniqueInBatch(p.Opts)
		}
		if err != nil {
			return jobSet{}, fmt.Errorf("job %d of batch %s: %w", i, id, err)
		}
		msg.Header[HeaderBatch] = []string{id}
		msg.Header[HeaderBatchIndex] = []string{idx}
		if chain != "" {
			msg.Header[HeaderChain] = []string{chain}
		}
		set.msgs[i], set.ids[i] = msg, jobID
	}
	return set, nil
}

// dispatchedAll reports stored job messages to Config.OnDispatched and
// makes their queues real queues.
func (d *Dispatcher) dispatchedAll(msgs []*nats.Msg) {
	for _, m := range msgs {
		if !isBatchSubject(m.Subject) {
			d.ensureQueueOf(context.Background(), m)
			d.dispatched(m)
		}
	}
}

// AddToBatch dispatches more jobs into a running batch, which then waits
// for them too, and returns their IDs. Each group of up to 999 jobs is
// stored atomically with the batch's new total; a batch that has finished
// or is cancelled takes none (ErrBatchFinished, ErrBatchCancelled).
func (d *Dispatcher) AddToBatch(ctx context.Context, id string, jobs ...DispatchManyParams) ([]string, error) {
	if err := ValidateBatchID(id); err != nil {
		return nil, err
	}
	if err := d.ensureBatchStream(ctx); err != nil {
		return nil, err
	}
	st := &batchStore{js: d.js, cfg: d.cfg}
	var ids []string
	for len(jobs) > 0 {
		group := jobs[:min(len(jobs), AtomicBatchLimit-1)]
		added, err := d.addGroup(ctx, st, id, group)
		ids = append(ids, added...)
		if err != nil {
			return ids, err
		}
		jobs = jobs[len(group):]
	}
	return ids, nil
}

// addGroup stores jobs in batch id with the new summary, atomically,
// retrying when the summary changed meanwhile.
func (d *Dispatcher) addGroup(ctx context.Context, st *batchStore, id string, jobs []DispatchManyParams) ([]string, error) {
	def, err := st.def(ctx, id)
	if err != nil {
		return nil, err
	}
	chain := ""
	if def.Chain != nil {
		chain = def.Chain.ID
	}
	for {
		sum, seq, err := st.sum(ctx, id)
		if err != nil {
			return nil, err
		}
		switch {
		case sum.Finished:
			return nil, fmt.Errorf("bus: batch %s: %w", id, ErrBatchFinished)
		case sum.Cancelled:
			return nil, fmt.Errorf("bus: batch %s: %w", id, ErrBatchCancelled)
		}
		first := sum.addChunks(len(jobs))
		sum.Total += len(jobs)
		set, err := d.batchJobs(ctx, id, first, jobs, chain)
		if err != nil {
			return nil, err
		}
		sumMsg, err := st.sumMsg(id, sum, seq)
		if err != nil {
			return nil, err
		}
		_, err = publishAtomic(ctx, d.js.Conn(), append([]*nats.Msg{sumMsg}, set.msgs...))
		if errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			return nil, notAcked("add to batch "+id, err)
		}
		d.dispatchedAll(set.msgs)
		return set.ids, nil
	}
}

// cancelBatch marks batch id cancelled and announces it.
func (d *Dispatcher) cancelBatch(ctx context.Context, id, reason string) error {
	st := &batchStore{js: d.js, cfg: d.cfg}
	return st.cancel(ctx, id, reason)
}

// maxCASTries bounds the compare-and-set retries of one change: each
// retry means another writer changed the state meanwhile, so the change
// always progresses; the bound only stops a broken server from looping.
const maxCASTries = 1000

// maxTokens bounds the causal tokens stamped on a released job.
const maxTokens = 16

// Job states in a chunk.
const (
	statePending   = 0
	stateSucceeded = 1
	stateFailed    = 2
	stateSkipped   = 3
)
