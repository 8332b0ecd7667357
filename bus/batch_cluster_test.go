package bus_test

import (
	"context"
	"sync"
	"testing"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// TestConcurrentBatchChangesOnAClusterAreRetried: on an R3 JOBS, many
// changes of one batch's summary at once (jobs added, cancels) all go
// through. A clustered stream refuses a compare-and-set while another
// write of the same subject is in flight (10164, "wrong last sequence"),
// which is a lost race like 10071 and must be read again and retried;
// before, it failed the change ("wrong last sequence (400/10164)").
func TestConcurrentBatchChangesOnAClusterAreRetried(t *testing.T) {
	t.Parallel()
	c := natstest.StartCluster(t, 3)
	_, js := natstest.Connect(t, c.URLs())
	ctx := context.Background()
	cfg := bus.Config{Replicas: 3}
	if err := bus.ProvisionQueues(ctx, js, cfg, "idle"); err != nil {
		t.Fatal(err)
	}
	d, err := bus.NewDispatcher(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	job := func(n int) bus.DispatchManyParams {
		return bus.DispatchManyParams{Args: welcomeEmail{UserID: int64(n)}, Opts: []bus.Option{bus.OnQueue("idle")}}
	}
	in := newInspector(t, js)
	for round := range 5 {
		b, err := d.Batch(ctx, []bus.DispatchManyParams{job(0)})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 24)
		for i := range 12 {
			wg.Go(func() {
				_, err := d.AddToBatch(ctx, b.ID, job(i+1))
				errs <- err
			})
		}
		wg.Wait()
		for range 12 {
			wg.Go(func() { errs <- in.CancelBatch(ctx, b.ID) })
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("round %d: %v", round, err)
			}
		}
		st, err := in.Batch(ctx, b.ID)
		if err != nil || st.Total != 13 || !st.Cancelled {
			t.Fatalf("round %d: batch %+v, %v; want 13 jobs, cancelled", round, st, err)
		}
	}
}
