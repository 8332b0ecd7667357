package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

func TestStatsCountsEachQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "high", "default")
	in := newInspector(t, js)
	failJob(t, js, d, "high", welcomeEmail{UserID: 1}, "x")
	failJob(t, js, d, "high", welcomeEmail{UserID: 2}, "x")
	failJob(t, js, d, "default", welcomeEmail{UserID: 3}, "x")
	for i := range 4 {
		if _, err := d.Dispatch(ctx, welcomeEmail{UserID: int64(i)}, bus.OnQueue("high")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Dispatch(ctx, welcomeEmail{UserID: 9}, bus.OnQueue("high"), bus.Delay(time.Hour)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the oldest ready job has waited at least this
	if m := fetchOne(t, js, "high", time.Second); m == nil {
		t.Fatal("no job to hold in flight")
	}

	st, err := in.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Queues) != 2 || st.FailedTotal != 3 {
		t.Fatalf("stats = %+v", st)
	}
	def, high := st.Queues[0], st.Queues[1]
	if high.Queue != "high" || high.Ready != 3 || high.InFlight != 1 || high.Delayed != 1 || high.Failed != 2 || high.Paused {
		t.Errorf("high = %+v", high)
	}
	if high.OldestReady < 50*time.Millisecond || high.OldestReady > time.Minute {
		t.Errorf("high's oldest ready job waited %s", high.OldestReady)
	}
	if def.Queue != "default" || def.Ready != 0 || def.InFlight != 0 || def.Delayed != 0 || def.Failed != 1 || def.OldestReady != 0 {
		t.Errorf("default = %+v", def)
	}
	if len(st.Workers) != 0 {
		t.Errorf("workers = %+v, want none", st.Workers)
	}
}

func TestPauseAndResumeAreKeptInKV(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, _ := setup(t, bus.Config{}, "high", "default")
	in := newInspector(t, js)
	if err := in.Pause(ctx, "low"); !errors.Is(err, bus.ErrUnknownQueue) || !strings.Contains(err.Error(), "default, high") {
		t.Fatalf("pause of an unknown queue: %v", err)
	}
	if err := in.Pause(ctx, "high"); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, bus.PauseBucket)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "high"); err != nil || string(e.Value()) != bus.PausedValue {
		t.Fatalf("KV %s/high = %v, %v", bus.PauseBucket, e, err)
	}
	st, err := in.Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Queues[1].Paused || st.Queues[0].Paused {
		t.Fatalf("paused flags: %+v", st.Queues)
	}
	if err := in.Resume(ctx, "high"); err != nil {
		t.Fatal(err)
	}
	if p, err := in.Paused(ctx); err != nil || p["high"] {
		t.Fatalf("after resume, paused = %v, %v", p, err)
	}
}

func TestMonitorAlertsAndPublishesEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := natstest.Start(t)
	nc, js := natstest.Connect(t, srv.ClientURL())
	if err := bus.ProvisionQueues(ctx, js, bus.Config{}, "high", "default"); err != nil {
		t.Fatal(err)
	}
	d, _ := bus.NewDispatcher(js, bus.Config{})
	in := newInspector(t, js)
	for i := range 3 {
		if _, err := d.Dispatch(ctx, welcomeEmail{UserID: int64(i)}, bus.OnQueue("high")); err != nil {
			t.Fatal(err)
		}
	}
	waitReady(t, in, map[string]uint64{"high": 3, "default": 0})
	limits, err := bus.ParseQueueLimits("high:2,default", 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	sts, err := in.Monitor(ctx, limits)
	if err != nil {
		t.Fatal(err)
	}
	if len(sts) != 2 || !sts[0].Alert || sts[0].Ready != 3 || sts[0].Max != 2 || sts[0].OldestReady <= 0 ||
		sts[1].Alert || sts[1].Ready != 0 || sts[1].Max != 10 {
		t.Fatalf("monitor = %+v", sts)
	}

	sub, err := nc.SubscribeSync(bus.QueueBusySubject)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := bus.PublishBusy(ctx, nc, sts); n != 1 || err != nil {
		t.Fatalf("PublishBusy = %d, %v", n, err)
	}
	m, err := sub.NextMsg(2 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var ev bus.QueueBusyEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Queue != "high" || ev.Ready != 3 || ev.Max != 2 || ev.OldestReady <= 0 {
		t.Fatalf("event = %s", m.Data)
	}

	// Waiting too long is an alert too, however few jobs are ready.
	waited, _ := bus.ParseQueueLimits("high:100", 0, time.Nanosecond)
	if sts, err := in.Monitor(ctx, waited); err != nil || !sts[0].Alert {
		t.Fatalf("max wait: %+v, %v", sts, err)
	}
	if _, err := in.Monitor(ctx, []bus.QueueLimit{{Queue: "low", Max: 1}}); !errors.Is(err, bus.ErrUnknownQueue) {
		t.Fatalf("unknown queue: %v", err)
	}
	for _, bad := range []string{"", "high:x", "Hi:3"} {
		if _, err := bus.ParseQueueLimits(bad, 0, 0); !errors.Is(err, bus.ErrInvalid) {
			t.Errorf("ParseQueueLimits(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}
