package settle_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/settle"
)

func TestTransient(t *testing.T) {
	apiErr := func(code, errCode int, desc string) error {
		return fmt.Errorf("create stream: %w", &jetstream.APIError{Code: code, ErrorCode: jetstream.ErrorCode(errCode), Description: desc})
	}
	for name, tc := range map[string]struct {
		err       error
		transient bool
		noPeerYet bool
	}{
		"timeout":           {context.DeadlineExceeded, true, false},
		"nats timeout":      {nats.ErrTimeout, true, false},
		"no responders":     {nats.ErrNoResponders, true, false},
		"503":               {apiErr(503, 10008, "JetStream system temporarily unavailable"), true, false},
		"peer offline":      {apiErr(400, 10005, "no suitable peers for placement, peer offline"), true, true},
		"too many replicas": {apiErr(400, 10005, "no suitable peers for placement, insufficient resources"), false, false},
		"name in use":       {apiErr(400, 10058, "stream name already in use with a different configuration"), false, false},
		"plain error":       {errors.New("boom"), false, false},
		"nil":               {nil, false, false},
	} {
		if got := settle.Transient(tc.err); got != tc.transient {
			t.Errorf("%s: Transient = %v, want %v", name, got, tc.transient)
		}
		if got := settle.NoPeerYet(tc.err); got != tc.noPeerYet {
			t.Errorf("%s: NoPeerYet = %v, want %v", name, got, tc.noPeerYet)
		}
	}
}

// A cluster that has just formed answers a stream with three replicas by
// timing out, "JetStream system temporarily unavailable" or "no suitable
// peers for placement, peer offline" for a moment; Retry gets the stream
// placed through all of them.
func TestRetryPlacesOnAFormingCluster(t *testing.T) {
	c := natstest.LaunchCluster(t, 3)
	_, js := natstest.Connect(t, c.URLs())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	refusals := map[string]int{}
	began := time.Now()
	// Short tries, so that some land in the moment after the election.
	err := settle.Retry(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PLACED", Replicas: 3})
		if err != nil {
			refusals[err.Error()]++
		}
		return err
	})
	if err != nil {
		t.Fatalf("Retry: %v (answers before it: %v)", err, refusals)
	}
	t.Logf("placed %s after the nodes started; answers before: %v", time.Since(began).Round(time.Millisecond), refusals)
}

func TestRetryStopsAtAnAnswer(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	var tries int
	err := settle.Retry(context.Background(), time.Second, func(ctx context.Context) error {
		tries++
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R5", Replicas: 5})
		return err
	})
	if err == nil || tries != 1 {
		t.Fatalf("five replicas on one server: err %v after %d tries; want an error after one try", err, tries)
	}
}

func TestRetryEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var tries int
	err := settle.Retry(ctx, time.Second, func(ctx context.Context) error {
		tries++
		return nats.ErrNoResponders
	})
	if !errors.Is(err, nats.ErrNoResponders) || tries < 2 {
		t.Fatalf("err %v after %d tries; want no responders after at least two tries", err, tries)
	}
}
