package bus_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/workers"
)

// TestRawJobWithControlCharacterIDIsDeadLettered: jobs published raw (as
// `nats pub` would) whose ID header holds a control character, or is not
// UTF-8, are not run;
// a real worker dead-letters each with a reason naming the header and the
// character, under its JOBS sequence, by which `queue show` finds it.
func TestRawJobWithControlCharacterIDIsDeadLettered(t *testing.T) {
	ctx := context.Background()
	js, _ := setup(t, bus.Config{}, "default")
	in, err := bus.NewInspector(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ header, id, why string }{
		{bus.HeaderMsgID, "a\x01b", "control character"},
		{bus.HeaderJobID, "tab\there", "control character"},
		{bus.HeaderMsgID, "del\x7f", "control character"},
		{bus.HeaderMsgID, "ok\xffid", "is not UTF-8"},
	}
	seqs := make([]uint64, len(cases))
	for i, c := range cases {
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: "jobs.default.jetfleet-noop", Header: nats.Header{c.header: {c.id}}, Data: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		seqs[i] = ack.Sequence
	}

	dead := make(chan struct{}, len(cases))
	w := workers.New(js, workers.Config{Queues: []string{"default"}, OnOutcome: func(_, _ string, o workers.Outcome) {
		if o == workers.DeadLettered {
			dead <- struct{}{}
		}
	}})
	ran := make(chan struct{}, 10)
	workers.Register(w, func(context.Context, *workers.Job[workers.Noop]) error { ran <- struct{}{}; return nil })
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = w.Run(wctx) }()
	defer func() { cancel(); wg.Wait() }()

	for range cases {
		select {
		case <-dead:
		case <-time.After(30 * time.Second):
			t.Fatal("the jobs were not all dead-lettered within 30s")
		}
	}
	for i, c := range cases {
		id := strconv.FormatUint(seqs[i], 10)
		fj, err := in.FailedJob(ctx, id)
		if err != nil {
			t.Fatalf("dead letter of the job with ID %q (sequence %s): %v", c.id, id, err)
		}
		for _, want := range []string{"header " + c.header, strconv.Quote(c.id), c.why} {
			if !strings.Contains(fj.Error, want) {
				t.Errorf("reason %q lacks %q", fj.Error, want)
			}
		}
		if fj.ID != id || fj.Attempts != 0 {
			t.Errorf("dead letter ID %q after %d attempts, want %s after 0", fj.ID, fj.Attempts, id)
		}
	}
	select {
	case <-ran:
		t.Fatal("a job with a control character in its ID ran")
	default:
	}
}
