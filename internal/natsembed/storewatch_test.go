package natsembed_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/logtest"
	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/tmpfstest"
)

// A single node whose store's filesystem fills up keeps a stream write
// error (publishes are not acknowledged); WatchStore does not restart it
// while the filesystem is full, and restarts it by itself once space is
// back: publishes are acknowledged again and every acknowledged message
// is still in the stream.
func TestWatchStoreRecoversWhenSpaceReturns(t *testing.T) {
	store := tmpfstest.New(t, 16<<20)
	log, rec := logtest.New()
	srv, err := natsembed.Start(natsembed.Config{Listen: "127.0.0.1:-1", StoreDir: store})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	url := srv.ClientURL()
	_, js := natstest.Connect(t, url)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}}); err != nil {
		t.Fatal(err)
	}
	watched := make(chan error, 1)
	go func() {
		watched <- srv.WatchStore(ctx, natsembed.StoreWatch{Interval: 50 * time.Millisecond, MinFree: 4 << 20, Logger: log})
	}()

	acked := map[uint64]bool{}
	publish := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		ack, err := js.Publish(ctx, "s", make([]byte, 1024))
		if err == nil {
			acked[ack.Sequence] = true
		}
		return err
	}
	for range 10 {
		if err := publish(5 * time.Second); err != nil {
			t.Fatalf("publish before the disk is full: %v", err)
		}
	}
	filler := tmpfstest.Fill(t, store)
	var pubErr error
	for i := 0; i < 2000 && pubErr == nil; i++ { // the first may fit in a block
		pubErr = publish(time.Second)
	}
	if pubErr == nil {
		t.Fatal("2000 publishes on a full filesystem all acknowledged")
	}
	werr := srv.StoreWriteError()
	if werr == nil || !strings.Contains(werr.Error(), "no space left on device") {
		t.Fatalf("StoreWriteError on a full filesystem = %v, want the stream's write error", werr)
	}
	// The watch logs the full filesystem; it must not restart while the
	// space is missing.
	waitLog(t, rec, "filesystem is full")
	if err := publish(time.Second); err == nil {
		t.Fatal("a publish acknowledged while the filesystem is still full")
	}
	if n := countLog(rec, "restarting the embedded NATS server"); n != 0 {
		t.Fatalf("the watch restarted %d times with the filesystem full", n)
	}
	t.Logf("full: %d acknowledged, then %v; %v", len(acked), pubErr, werr)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	for {
		err := publish(time.Second)
		if err == nil {
			break
		}
		if time.Since(freed) > 60*time.Second {
			t.Fatalf("no publish acknowledged 60s after space came back: %v", err)
		}
	}
	t.Logf("recovered: a publish acknowledged %.2fs after space came back", time.Since(freed).Seconds())
	if n := countLog(rec, "embedded NATS server restarted"); n != 1 {
		t.Errorf("%d restarts logged, want 1: %v", n, rec.Entries())
	}
	if srv.ClientURL() != url {
		t.Errorf("client URL after the restart %s, want the same %s", srv.ClientURL(), url)
	}
	if werr := srv.StoreWriteError(); werr != nil {
		t.Errorf("StoreWriteError after recovery: %v", werr)
	}
	s, err := js.Stream(ctx, "S")
	if err != nil {
		t.Fatal(err)
	}
	for seq := range acked {
		if _, err := s.GetMsg(ctx, seq); err != nil {
			t.Errorf("acknowledged message #%d: %v", seq, err)
		}
	}
	cancel()
	if err := <-watched; err != nil {
		t.Errorf("WatchStore: %v", err)
	}
}

// WatchStore does not watch a clustered node.
func TestWatchStoreRefusesCluster(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	err := c.Nodes[0].WatchStore(context.Background(), natsembed.StoreWatch{})
	if !errors.Is(err, natsembed.ErrClustered) {
		t.Fatalf("WatchStore on a cluster node = %v, want ErrClustered", err)
	}
}

func countLog(rec *logtest.Recorder, part string) int {
	n := 0
	for _, e := range rec.Entries() {
		if strings.Contains(e.Str("message"), part) {
			n++
		}
	}
	return n
}

// waitLog waits until a log line contains part, for at most 30s.
func waitLog(t *testing.T, rec *logtest.Recorder, part string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for countLog(rec, part) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q in 30s: %v", part, rec.Entries())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
