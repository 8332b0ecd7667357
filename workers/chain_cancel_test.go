package workers_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/workers"
)

// TestCancellingAChainAsItsStepsFinish: chains of short steps are
// cancelled while they run, each at another moment. A cancel that
// answers "finished" (ErrBatchFinished) must mean the whole chain had
// finished: its then ran, and no step ended after the answer. Any other
// cancel must stop the chain: its then never runs. Before, a step that
// finished between the cancel's read of the chain and its cancel made
// the cancel answer "finished" while the next step, already released,
// ran on to the end.
func TestCancellingAChainAsItsStepsFinish(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	ctx := context.Background()
	cbs := newCallbackLog()
	start(t, batchWorker(e, "default", 8, cbs, func(context.Context, *workers.Job[batchJob]) error {
		time.Sleep(5 * time.Millisecond)
		return nil
	}))
	in, err := bus.NewInspector(e.js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	const chains, steps = 40, 8
	type outcome struct {
		err error
		at  time.Time
	}
	outcomes := make([]outcome, chains)
	ids := make([]string, chains)
	var wg sync.WaitGroup
	for i := range chains {
		list := make([]bus.Step, steps)
		for k := range list {
			list[k] = bus.StepJob(batchJob{N: i*100 + k})
		}
		id, err := e.d.Chain(ctx, list, bus.Then(callbackJob{Name: "then"}), bus.BatchID(fmt.Sprintf("c%02d", i)))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 40 * time.Millisecond) // from at once to after the end
			err := in.CancelBatch(ctx, id)
			outcomes[i] = outcome{err, time.Now()}
		})
	}
	wg.Wait()
	waitIdle(t, e, "default")
	finished := 0
	for i, id := range ids {
		o := outcomes[i]
		switch {
		case errors.Is(o.err, bus.ErrBatchFinished):
			finished++
			last, err := in.Chain(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			end := last[len(last)-1]
			if len(last) != steps || !end.Done() || end.FinishedAt.After(o.at) {
				t.Errorf("chain %s: the cancel answered %q at %s, but its step %d/%d ended at %s (%s)",
					id, o.err, o.at.Format(time.StampMicro), end.Step, steps, end.FinishedAt.Format(time.StampMicro), end.State)
			}
		case o.err != nil:
			t.Errorf("cancel chain %s: %v", id, o.err)
		default:
			if n := cbs.stored("then", id); n != 0 {
				t.Errorf("chain %s was cancelled, but its then ran %d times", id, n)
			}
		}
	}
	t.Logf("%d of %d cancels found the chain finished", finished, chains)
}
