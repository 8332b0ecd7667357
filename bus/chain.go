package bus

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"
)

// Chains (Laravel's Bus::chain, River Pro workflows): steps run one after
// the other, each dispatched only once the previous one succeeded; a
// failure stops the chain.
//
// A chain is a sequence of batches: a job step is a batch of one. Step k
// is the batch "<chain ID>-<k>", whose then callback is the whole of step
// k+1 (its definition, its summary and its jobs), prepared when the chain
// is dispatched. So the next step is released by the same atomic,
// compare-and-set change that finishes the previous one: exactly once, and
// only when every job of the previous step succeeded. The chain's Catch
// is each step's catch; its Finally runs when the chain ends, after its
// last step or at the step that failed (or was cancelled).

// Step is one step of a chain: a job (StepJob) or a batch (StepBatch).
type Step struct {
	jobs []DispatchManyParams
	opts []BatchOption
}

// StepJob is a chain step that runs one job.
func StepJob(args Args, opts ...Option) Step {
	return Step{jobs: []DispatchManyParams{{Args: args, Opts: opts}}}
}

// StepBatch is a chain step that runs jobs as a batch, with their own
// options (callbacks, AllowFailures: with it, failures do not stop the
// chain). The next step starts once every job of the batch has finished
// and none failed (or failures were allowed).
func StepBatch(jobs []DispatchManyParams, opts ...BatchOption) Step {
	return Step{jobs: jobs, opts: opts}
}

// Steps makes a step of each job, with default options:
// d.Chain(ctx, bus.Steps(Charge{42}, Ship{42}, Invoice{42})).
func Steps(args ...Args) []Step {
	out := make([]Step, len(args))
	for i, a := range args {
		out[i] = StepJob(a)
	}
	return out
}

// maxChainID leaves room for "-<step>" in the steps' batch IDs.
const maxChainID = 56

// Chain dispatches steps to run one after the other and returns the
// chain's ID; step k is the batch "<ID>-<k>" (Inspector.Chain lists them).
// Only the first step is dispatched now, atomically; each next one when
// the previous succeeded. opts may hold Then (after the last step), Catch
// (a step's job failed for good), Finally (the chain ended, either way),
// BatchID and BatchName; not AllowFailures.
//
// Every step is prepared now, with ctx's headers: a step's jobs are
// stored in its predecessor's definition, so the whole chain must fit in
// one message (the server's max_payload), and releasing a step is one
// atomic publish, so a batch step holds at most AtomicBatchLimit-3 jobs
// less the callbacks released with it.
func (d *Dispatcher) Chain(ctx context.Context, steps []Step, opts ...BatchOption) (string, error) {
	var o batchOptions
	for _, opt := range opts {
		opt(&o)
	}
	if len(steps) == 0 {
		return "", fmt.Errorf("%w: a chain needs at least one step", ErrInvalid)
	}
	if o.allowFailures {
		return "", fmt.Errorf("%w: AllowFailures applies to a batch step (StepBatch), not to a chain", ErrInvalid)
	}
	if o.id != "" && len(o.id) > maxChainID {
		return "", fmt.Errorf("%w: chain ID %q is longer than %d bytes", ErrInvalid, o.id, maxChainID)
	}
	// The chain's own callbacks, encoded as those of a batch named as the
	// chain.
	if o.id == "" {
		o.id = nuid.Next()
	}
	own, err := d.newBatchDef(ctx, &o, &chainRef{ID: o.id, Steps: len(steps)})
	if err != nil {
		return "", err
	}
	chainID := own.ID
	if err := d.ensureBatchStream(ctx); err != nil {
		return "", err
	}
	// Build from the last step back: each step's then is the next step.
	next := append(append([]flowMsg(nil), own.Then...), own.Finally...)
	var first []*nats.Msg
	for k := len(steps); k >= 1; k-- {
		msgs, err := d.chainStep(ctx, chainID, k, len(steps), steps[k-1], own, next)
		if err != nil {
			return "", err
		}
		if k > 1 {
			// Released in one atomic publish with the last change of the
			// previous step's summary and that step's own then and finally.
			released := 1 + len(msgs) + len(stepCallbacks(steps[k-2], CallbackThen)) + len(stepCallbacks(steps[k-2], CallbackFinally))
			if released > AtomicBatchLimit {
				return "", fmt.Errorf("%w: chain step %d: releasing it takes %d messages in one atomic publish; the limit is %d (give the step fewer jobs)",
					ErrInvalid, k, released, AtomicBatchLimit)
			}
		}
		next = make([]flowMsg, len(msgs))
		for i, m := range msgs {
			next[i] = flowMsg{Subject: m.Subject, Header: m.Header, Body: m.Data}
		}
		first = msgs
	}
	if len(first) > AtomicBatchLimit {
		return "", fmt.Errorf("%w: the first step of chain %s has %d jobs; the limit is %d", ErrInvalid, chainID, len(steps[0].jobs), AtomicBatchLimit-2)
	}
	if _, err := publishAtomic(ctx, d.js.Conn(), first); err != nil {
		return "", d.batchCreateError(chainID+"-1", err)
	}
	d.dispatchedAll(first)
	return chainID, nil
}

// stepCallbacks are the callbacks of a step's own options named name.
func stepCallbacks(s Step, name string) []callback {
	var o batchOptions
	for _, opt := range s.opts {
		opt(&o)
	}
	var out []callback
	for _, cb := range o.callbacks {
		if cb.name == name {
			out = append(out, cb)
		}
	}
	return out
}

// chainStep builds the messages that create step k of a chain: its
// definition (then: next; catch: its own and the chain's; on failure: the
// chain's finally), its sealed summary and its jobs.
func (d *Dispatcher) chainStep(ctx context.Context, chainID string, k, n int, s Step, own *batchDef, next []flowMsg) ([]*nats.Msg, error) {
	if len(s.jobs) == 0 {
		return nil, fmt.Errorf("%w: step %d of the chain has no job", ErrInvalid, k)
	}
	var o batchOptions
	for _, opt := range s.opts {
		opt(&o)
	}
	if o.id != "" {
		return nil, fmt.Errorf("%w: step %d: a step's ID is the chain's ID and its number", ErrInvalid, k)
	}
	o.id = chainID + "-" + strconv.Itoa(k)
	if o.name == "" {
		o.name = fmt.Sprintf("%s step %d/%d", cmp.Or(own.Name, "chain "+chainID), k, n)
	}
	def, err := d.newBatchDef(ctx, &o, &chainRef{ID: chainID, Step: k, Steps: n})
	if err != nil {
		return nil, err
	}
	def.Then = append(def.Then, next...)
	def.Catch = append(def.Catch, own.Catch...)
	def.OnFailure = append(def.OnFailure, own.Finally...)
	set, err := d.batchJobs(ctx, def.ID, 0, s.jobs, chainID)
	if err != nil {
		return nil, fmt.Errorf("chain step %d: %w", k, err)
	}
	sum := newSum(len(s.jobs), true)
	sum.Name = def.Name
	msgs, err := d.createMsgs(def, sum)
	if err != nil {
		return nil, fmt.Errorf("chain %s, step %d (it holds every later step): %w", chainID, k, err)
	}
	return append(msgs, set.msgs...), nil
}

// Chain returns the status of each step of chain id that has been
// dispatched, in order: steps not reached yet are not listed (the first
// step's Steps says how many there are).
func (in *Inspector) Chain(ctx context.Context, id string) ([]BatchStatus, error) {
	if id == "" || len(id) > maxChainID {
		return nil, fmt.Errorf("%w: chain ID %q", ErrInvalid, id)
	}
	var out []BatchStatus
	for k := 1; ; k++ {
		st, err := in.Batch(ctx, id+"-"+strconv.Itoa(k))
		if errors.Is(err, ErrUnknownBatch) {
			if k == 1 {
				return nil, fmt.Errorf("bus: chain %s: %w", id, ErrUnknownBatch)
			}
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, st)
		if k >= st.Steps {
			return out, nil
		}
	}
}
