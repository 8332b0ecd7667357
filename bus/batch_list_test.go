package bus_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jetfleet/jetfleet/bus"
)

// TestBatchesListsTheNewestWhenThereAreMore: with more batches than
// MaxListedBatches, Batches lists the newest ones, newest first, with
// their counts (before, it failed: "more than 1,024 subjects match", and
// with it `queue batches`, the dashboard's page and the batch metrics).
func TestBatchesListsTheNewestWhenThereAreMore(t *testing.T) {
	t.Parallel()
	js, d := setup(t, bus.Config{}, "idle")
	ctx := context.Background()
	const n = bus.MaxListedBatches + 30
	for i := range n {
		_, err := d.Batch(ctx, []bus.DispatchManyParams{{Args: welcomeEmail{UserID: int64(i)}, Opts: []bus.Option{bus.OnQueue("idle")}}},
			bus.BatchID(fmt.Sprintf("b%04d", i)))
		if err != nil {
			t.Fatal(err)
		}
	}
	list, err := newInspector(t, js).Batches(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != bus.MaxListedBatches {
		t.Fatalf("Batches listed %d of %d; want the newest %d", len(list), n, bus.MaxListedBatches)
	}
	for i, st := range list {
		if want := fmt.Sprintf("b%04d", n-1-i); st.ID != want || st.Total != 1 || st.Pending != 1 || st.State != bus.BatchRunning {
			t.Fatalf("batch %d listed: %+v; want %s, 1 job pending, running", i, st, want)
		}
	}
}
