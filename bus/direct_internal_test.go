package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/natstest"
)

// directStream is a stream S (subjects s.>) holding n messages, with
// direct gets off: no server answers them, as for a moment after a
// clustered stream is created or its leader changes.
func directStream(t *testing.T, n int) (jetstream.JetStream, jetstream.StreamConfig) {
	return directStreamNamed(t, "S", "s", n)
}

// directStreamNamed is directStream with a stream name and subject prefix.
func directStreamNamed(t *testing.T, name, prefix string, n int) (jetstream.JetStream, jetstream.StreamConfig) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := context.Background()
	cfg := jetstream.StreamConfig{Name: name, Subjects: []string{prefix + ".>"}, AllowDirect: false}
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	for range n {
		if _, err := js.Publish(ctx, prefix+".a", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := directGet(ctx, js, name, directGetRequest{NextFor: prefix + ".>", Batch: 1}); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("a direct get with direct gets off: %v, want no responders", err)
	}
	return js, cfg
}

func TestCountSubjectAsksAgainUntilTheStreamServesDirectGets(t *testing.T) {
	js, cfg := directStream(t, 3)
	ctx := context.Background()
	enableDirect(t, js, cfg)
	n, err := countSubject(ctx, js, "S", "s.>")
	if err != nil || n != 3 {
		t.Fatalf("countSubject: %d, %v; want 3 once the stream serves direct gets", n, err)
	}
}

func TestBatchGetAsksAgainUntilTheStreamServesDirectGets(t *testing.T) {
	js, cfg := directStream(t, 3)
	ctx := context.Background()
	in, err := NewInspector(js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	enableDirect(t, js, cfg)
	var seqs []uint64
	err = in.batchGet(ctx, "S", directGetRequest{Seq: 1, NextFor: "s.>", Batch: 10}, func(m *jetstream.RawStreamMsg) bool {
		seqs = append(seqs, m.Sequence)
		return true
	})
	if err != nil || len(seqs) != 3 {
		t.Fatalf("batchGet: sequences %v, %v; want 1, 2, 3 once the stream serves direct gets", seqs, err)
	}
}

// enableDirect turns direct gets on after a moment.
func enableDirect(t *testing.T, js jetstream.JetStream, cfg jetstream.StreamConfig) {
	go func() {
		time.Sleep(300 * time.Millisecond)
		cfg.AllowDirect = true
		if _, err := js.UpdateStream(context.Background(), cfg); err != nil {
			t.Error(err)
		}
	}()
}

func TestALookupInJOBSAsksAgainUntilTheStreamServesDirectGets(t *testing.T) {
	js, cfg := directStreamNamed(t, JobsStream, JobsPrefix, 1)
	in, err := NewInspector(js, Config{})
	if err != nil {
		t.Fatal(err)
	}
	enableDirect(t, js, cfg)
	m, err := in.lastMsg(context.Background(), JobsStream, JobsPrefix+".>")
	if err != nil || m == nil || m.Sequence != 1 {
		t.Fatalf("lastMsg: %+v, %v; want message 1 once the stream serves direct gets", m, err)
	}
}

func TestCountSubjectGivesUpWhenNoServerEverAnswers(t *testing.T) {
	js, _ := directStream(t, 1)
	began := time.Now()
	_, err := countSubject(context.Background(), js, "S", "s.>")
	if !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("countSubject: %v; want no responders", err)
	}
	if took := time.Since(began); took < noRespondersWait/2 {
		t.Errorf("countSubject gave up after %s; it asks again for up to %s", took, noRespondersWait)
	}
}
