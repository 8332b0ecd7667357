package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Reading and writing a batch's records in JOBS (batch.go): every write a
// compare-and-set on the subject's last sequence.

// batchStore reads and changes batches' state in JOBS.
type batchStore struct {
	js  jetstream.JetStream
	cfg Config
}

// def reads a batch's definition.
func (st *batchStore) def(ctx context.Context, id string) (*batchDef, error) {
	m, err := lastOnSubject(ctx, st.js, JobsStream, defSubject(id))
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("bus: batch %s: %w", id, ErrUnknownBatch)
	}
	var def batchDef
	if err := json.Unmarshal(m.Data, &def); err != nil {
		return nil, fmt.Errorf("bus: batch %s: bad definition: %w", id, err)
	}
	return &def, nil
}

// sum reads a batch's summary from the stream's leader, with its sequence.
func (st *batchStore) sum(ctx context.Context, id string) (*batchSum, uint64, error) {
	m, err := lastOnSubject(ctx, st.js, JobsStream, sumSubject(id))
	if err != nil {
		return nil, 0, err
	}
	if m == nil {
		return nil, 0, fmt.Errorf("bus: batch %s: %w", id, ErrUnknownBatch)
	}
	var s batchSum
	if err := json.Unmarshal(m.Data, &s); err != nil {
		return nil, 0, fmt.Errorf("bus: batch %s: bad summary: %w", id, err)
	}
	for len(s.Done) < len(s.Chunks) {
		s.Done = append(s.Done, nil)
	}
	return &s, m.Seq, nil
}

// sumMsg is the compare-and-set write of sum over the summary at seq.
func (st *batchStore) sumMsg(id string, sum *batchSum, seq uint64) (*nats.Msg, error) {
	body, err := json.Marshal(sum)
	if err != nil {
		return nil, fmt.Errorf("bus: encode batch summary: %w", err)
	}
	return &nats.Msg{Subject: sumSubject(id), Header: casHeader(seq, st.cfg.withDefaults().BatchRetention), Data: body}, nil
}

// updateSum applies change to batch id's summary (read from the leader)
// and the transitions it allows, and publishes the new summary atomically
// with the callbacks those release, retrying on a concurrent change.
// change returns false when it has nothing to change. def is read when
// nil and needed. tokens are causal tokens stamped on released jobs. It
// returns the summary as stored (or as found, when unchanged).
func (st *batchStore) updateSum(ctx context.Context, id string, def *batchDef, change func(*batchSum) bool, tokens ...string) (*batchSum, error) {
	for range maxCASTries {
		sum, seq, err := st.sum(ctx, id)
		if err != nil {
			return nil, err
		}
		changed := change(sum)
		if def == nil && !sum.Finished {
			if def, err = st.def(ctx, id); err != nil {
				return nil, err
			}
		}
		var released []flowMsg
		if def != nil {
			released = sum.advance(def)
		}
		if !changed && len(released) == 0 {
			return sum, nil
		}
		sumMsg, err := st.sumMsg(id, sum, seq)
		if err != nil {
			return nil, err
		}
		msgs := []*nats.Msg{sumMsg}
		now := time.Now().UTC()
		for _, f := range released {
			m := f.msg()
			stampTokens(m, tokens)
			stampCreated(m, now)
			msgs = append(msgs, m)
		}
		_, err = publishAtomic(ctx, st.js.Conn(), msgs)
		if errors.Is(err, errConflict) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("bus: batch %s: %w", id, err)
		}
		return sum, nil
	}
	return nil, fmt.Errorf("bus: batch %s: its summary kept changing under %d tries", id, maxCASTries)
}

// cancel marks batch id cancelled (its pending jobs are skipped) and
// announces it on BatchCancelledSubject.
func (st *batchStore) cancel(ctx context.Context, id, reason string) error {
	var finished bool
	_, err := st.updateSum(ctx, id, nil, func(s *batchSum) bool {
		if s.Finished {
			finished = true
			return false
		}
		if s.Cancelled {
			return false
		}
		s.Cancelled, s.CancelReason = true, reason
		return true
	})
	if err != nil {
		return err
	}
	if finished {
		return fmt.Errorf("bus: cancel batch %s: %w", id, ErrBatchFinished)
	}
	if err := st.js.Conn().Publish(BatchCancelledSubject, []byte(id)); err != nil {
		return fmt.Errorf("bus: announce the cancel of batch %s: %w", id, err)
	}
	return nil
}

// stampCreated dates a chain step's summary, released now, with now: it
// was written when the chain was dispatched, but the step is dispatched
// only now (BatchStatus.CreatedAt, the order of Batches).
func stampCreated(m *nats.Msg, now time.Time) {
	if !isBatchSubject(m.Subject) || !strings.HasSuffix(m.Subject, ".sum") {
		return
	}
	var sum batchSum
	if json.Unmarshal(m.Data, &sum) != nil {
		return
	}
	sum.CreatedAt = now
	if b, err := json.Marshal(sum); err == nil {
		m.Data = b
	}
}

// stampTokens adds tokens to a released job's causal token (a comma
// separated list of positions; readers keep the highest per domain).
func stampTokens(m *nats.Msg, tokens []string) {
	if len(tokens) == 0 || isBatchSubject(m.Subject) {
		return
	}
	var all []string
	add := func(tok string) {
		for _, p := range lastPositions(tok) {
			if p = strings.TrimSpace(p); p != "" && !slices.Contains(all, p) {
				all = append(all, p)
			}
		}
		if len(all) > maxTokens {
			all = all[len(all)-maxTokens:]
		}
	}
	add(m.Header.Get(HeaderCausalToken))
	for _, t := range tokens {
		add(t)
	}
	m.Header.Set(HeaderCausalToken, strings.Join(all, ","))
}

// lastPositions is at most the last maxTokens positions of a causal
// token. A job's token comes from its header, which anyone who may publish
// a job writes: comparing each of 12,000 positions with all the others
// took seconds of CPU on every release, longer than the write's deadline.
func lastPositions(tok string) []string {
	if tok == "" {
		return nil
	}
	parts := strings.Split(tok, ",")
	return parts[max(len(parts)-maxTokens, 0):]
}
