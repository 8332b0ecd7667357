package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// TestScanDelayedReadsEachDelayedJobOnce: a scan from the start reads
// every delayed job with its queue and ready time (not the ready ones);
// a limit stops it where the next scan goes on; a scan from the returned
// cursor reads only what was delayed since.
func TestScanDelayedReadsEachDelayedJobOnce(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := context.Background()
	if err := bus.ProvisionQueues(ctx, js, bus.Config{}, "default", "high"); err != nil {
		t.Fatal(err)
	}
	d, _ := bus.NewDispatcher(js, bus.Config{})
	in, _ := bus.NewInspector(js, bus.Config{})
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	for i, q := range []string{"default", "high", "default"} {
		if _, err := d.Dispatch(ctx, welcomeEmail{UserID: int64(i)}, bus.OnQueue(q), bus.At(at.Add(time.Duration(i)*time.Minute))); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Dispatch(ctx, welcomeEmail{UserID: int64(i)}, bus.OnQueue(q)); err != nil { // ready: not delayed
			t.Fatal(err)
		}
	}
	var got []bus.DelayedJob
	collect := func(j bus.DelayedJob) { got = append(got, j) }
	next, err := in.ScanDelayed(ctx, 0, 2, collect)
	if err != nil || len(got) != 2 {
		t.Fatalf("first scan, limit 2: %d jobs, %v", len(got), err)
	}
	if next, err = in.ScanDelayed(ctx, next, 100, collect); err != nil || len(got) != 3 {
		t.Fatalf("second scan: %d jobs in all, %v", len(got), err)
	}
	for i, q := range []string{"default", "high", "default"} {
		if got[i].Queue != q || !got[i].ReadyAt.Equal(at.Add(time.Duration(i)*time.Minute)) || got[i].Token == "" {
			t.Errorf("delayed job %d: %+v, want queue %s ready at %s", i, got[i], q, at.Add(time.Duration(i)*time.Minute))
		}
	}
	if _, err := in.ScanDelayed(ctx, next, 100, collect); err != nil || len(got) != 3 {
		t.Fatalf("a scan from the cursor read again: %d jobs in all, %v", len(got), err)
	}
	if _, err := d.Dispatch(ctx, welcomeEmail{}, bus.Delay(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := in.ScanDelayed(ctx, next, 100, collect); err != nil || len(got) != 4 {
		t.Fatalf("after one more delayed job: %d jobs in all, %v", len(got), err)
	}
}
