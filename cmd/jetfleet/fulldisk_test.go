package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/tmpfstest"
)

// noop is jetfleet's diagnostic job kind, which `up`'s workers run.
type noop struct{}

func (noop) Kind() string { return "jetfleet-noop" }

// `jetfleet up` whose NATS store fills up stops acknowledging dispatches,
// and once space is back restarts its embedded server by itself: its own
// workers reconnect and run a job dispatched after that.
func TestUpRecoversFromAFullStore(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "data", "nats")
	if err := os.MkdirAll(store, 0o700); err != nil {
		t.Fatal(err)
	}
	tmpfstest.Mount(t, store, 48<<20)
	addr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(t, 1)[0])
	up := startProc(t, dir, testEnv("JETFLEET_HISTORY_MAX_BYTES=1048576", "JETFLEET_FAILED_MAX_BYTES=1048576", "JETFLEET_IDEMPOTENCY_MAX_BYTES=1048576", "SESSION_MAX_BYTES=1048576", "JETFLEET_IMAGE_STORE_MB=1"), "up", "--nats-listen", addr, "--listen", "127.0.0.1:0", "--queues", "default")
	up.WaitFor(t, "jetfleet is up", 60*time.Second)
	js := connectUp(t, dir)
	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	in, err := bus.NewInspector(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dispatch := func(n int, timeout time.Duration) (string, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return d.Dispatch(ctx, noop{}, bus.OnQueue("default"), bus.JobID(fmt.Sprintf("noop-%05d", n)))
	}

	filler := tmpfstest.Fill(t, store)
	var err2 error
	n := 0
	for ; n < 2000 && err2 == nil; n++ { // the first may fit in a block
		_, err2 = dispatch(n, time.Second)
	}
	if !errors.Is(err2, bus.ErrNotAcknowledged) {
		t.Fatalf("dispatch on a full store: %v, want bus.ErrNotAcknowledged", err2)
	}
	up.WaitFor(t, "filesystem is full", 30*time.Second)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	up.WaitFor(t, "embedded NATS server restarted", 60*time.Second)
	var id string
	eventually(t, 30*time.Second, "a dispatch acknowledged after the restart", func() error {
		n++
		id, err = dispatch(n, time.Second)
		return err
	})
	eventually(t, 30*time.Second, "the job run by up's workers", func() error {
		st, err := in.Job(ctx, id)
		if err != nil {
			return err
		}
		if st.State != bus.JobSucceeded {
			return fmt.Errorf("job %s is %s", id, st.State)
		}
		return nil
	})
	t.Logf("space back: a job dispatched and run by up's workers %.1fs later", time.Since(freed).Seconds())
	if code := up.Signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("up exited %d after SIGTERM, want 0", code)
	}
}
