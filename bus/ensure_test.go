package bus_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// TestDispatchMakesTheQueueReal: jobs dispatched (one by one, in a batch,
// delayed) to queues no worker has served yet are counted by the
// Inspector, with their age, and pass Monitor; a consumer that exists is
// left with its own settings.
func TestDispatchMakesTheQueueReal(t *testing.T) {
	ctx := context.Background()
	js, d := setup(t, bus.Config{}) // streams only: no consumer at all
	if err := bus.EnsureQueues(ctx, js, bus.Config{AckWait: 7 * time.Second}, "owned"); err != nil {
		t.Fatal(err)
	}
	in, err := bus.NewInspector(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.DispatchJSON(ctx, "k", []byte(`{}`), bus.OnQueue("newqueue")); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DispatchMany(ctx, bus.DispatchManyParams{Args: welcomeEmail{}, Opts: []bus.Option{bus.OnQueue("batched")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DispatchJSON(ctx, "k", []byte(`{}`), bus.OnQueue("later"), bus.Delay(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DispatchJSON(ctx, "k", []byte(`{}`), bus.OnQueue("owned")); err != nil {
		t.Fatal(err)
	}
	queues, err := in.Queues(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"batched", "later", "newqueue", "owned"}; !slices.Equal(queues, want) {
		t.Fatalf("queues = %v, want %v", queues, want)
	}
	waitReady(t, in, map[string]uint64{"batched": 1, "newqueue": 1, "owned": 1})
	st, err := in.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range st.Queues {
		switch {
		case q.Queue == "later" && q.Delayed != 1:
			t.Errorf("later: %d delayed, want 1", q.Delayed)
		case q.Queue != "later" && (q.Ready != 1 || q.OldestReady <= 0):
			t.Errorf("%s: %d ready, oldest %s; want 1 with an age", q.Queue, q.Ready, q.OldestReady)
		}
	}
	rows, err := in.Monitor(ctx, []bus.QueueLimit{{Queue: "newqueue", Max: 2}})
	if err != nil || len(rows) != 1 || rows[0].Ready != 1 {
		t.Fatalf("monitor newqueue:2 = %+v, %v", rows, err)
	}
	c, err := js.Consumer(ctx, bus.JobsStream, wire.ConsumerName("owned"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.CachedInfo().Config.AckWait; got != 7*time.Second {
		t.Errorf("the dispatcher changed the AckWait of an existing consumer to %s", got)
	}
}
