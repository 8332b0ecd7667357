package workers_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/workers"
)

// lossyAckServer starts a server on which user "lossy" may publish
// anything but the answers to a first delivery of a default-queue job:
// its acks and heartbeats reach no server, as those sent while a cluster
// elects a consumer leader do. Its later deliveries are answered as
// usual. It returns the URLs of an admin and of a lossy client.
func lossyAckServer(t *testing.T) (admin, lossy string) {
	t.Helper()
	return serverDenying(t, "$JS.ACK.JOBS.q-default.1.>")
}

// serverDenying starts a server on which user "lossy" may publish
// anything but on deny, and returns the URLs of an admin and a lossy
// client.
func serverDenying(t *testing.T, deny string) (admin, lossy string) {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "nats.conf")
	err := os.WriteFile(conf, []byte(`
authorization {
  users = [
    {user: admin, password: admin}
    {user: lossy, password: lossy, permissions: {publish: {allow: ">", deny: "`+deny+`"}}}
  ]
}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := natsembed.Start(natsembed.Config{Listen: "127.0.0.1:-1", StoreDir: filepath.Join(dir, "store"), ConfigFile: conf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	url := srv.ClientURL()
	return withUser(url, "admin"), withUser(url, "lossy")
}

func withUser(url, user string) string {
	return fmt.Sprintf("nats://%s:%s@%s", user, user, url[len("nats://"):])
}

// TestALostAckIsNotARunNorAnInterruption: a job whose ack or heartbeats
// were lost comes back from the server. While its first delivery runs in
// the same worker, the new one is left to it; once the job has succeeded,
// the new delivery is acked, not run again, and not dead-lettered as
// interrupted even when its tries are used.
func TestALostAckIsNotARunNorAnInterruption(t *testing.T) {
	t.Parallel()
	adminURL, lossyURL := lossyAckServer(t)
	cfg := bus.Config{AckWait: time.Second}
	_, js := natstest.Connect(t, adminURL)
	ctx := context.Background()
	if err := bus.Provision(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	if err := bus.ProvisionQueues(ctx, js, cfg, "default"); err != nil {
		t.Fatal(err)
	}
	d, err := bus.NewDispatcher(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// quick: its one try ends before AckWait, its ack is lost.
	// long: runs 2.5 s, its heartbeats lost, so the server hands it out
	// again twice while it runs; then its ack is lost too.
	quick, err := d.Dispatch(ctx, workers.Noop{}, bus.Tries(1))
	if err != nil {
		t.Fatal(err)
	}
	long, err := d.Dispatch(ctx, workers.Sleep{MS: 2500}, bus.Tries(3))
	if err != nil {
		t.Fatal(err)
	}

	_, wjs := natstest.Connect(t, lossyURL, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	rec := &recorder{}
	w := workers.New(wjs, workers.Config{Bus: cfg, Middleware: []workers.Middleware{recordRuns(rec)}})
	workers.RegisterDiagnostics(w)
	start(t, w)

	waitFor(t, 20*time.Second, "both jobs settled", func() bool {
		ci := consumerInfo(t, js, "default")
		return ci.NumPending == 0 && ci.NumAckPending == 0
	})
	runs := map[string]int{}
	for _, r := range rec.snapshot() {
		runs[r.id]++
	}
	if runs[quick] != 1 || runs[long] != 1 {
		t.Errorf("runs: quick %d, long %d; want each run once", runs[quick], runs[long])
	}
	if n := natstest.StreamMsgs(t, js, bus.DLQStream); n != 0 {
		t.Errorf("%d dead letters, want none: %v", n, deadLetters(t, js)[0].Header)
	}
	in, err := bus.NewInspector(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{quick, long} {
		st, err := in.Job(ctx, id)
		if err != nil || st.State != bus.JobSucceeded || st.Attempt != 1 {
			t.Errorf("job %s: %+v, %v; want succeeded on attempt 1", id, st, err)
		}
	}
}

// TestALookupBeforeARunIsHeartbeated: a job delivered again is looked up
// (its dead letter, its record) before it runs, and a lookup can wait up
// to 10 s for a cluster electing a leader. The job is heartbeated
// meanwhile: the server does not hand it out again every AckWait.
func TestALookupBeforeARunIsHeartbeated(t *testing.T) {
	t.Parallel()
	// The worker's direct gets on DLQ reach no server: its lookup of a
	// retried job's dead letter waits out its 10 s.
	adminURL, lossyURL := serverDenying(t, "$JS.API.DIRECT.GET.DLQ.>")
	cfg := bus.Config{AckWait: time.Second}
	_, js := natstest.Connect(t, adminURL)
	ctx := context.Background()
	if err := bus.ProvisionQueues(ctx, js, cfg, "default"); err != nil {
		t.Fatal(err)
	}
	d, err := bus.NewDispatcher(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Dispatch(ctx, workers.Fail{Times: 1}, bus.Backoff(10*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, wjs := natstest.Connect(t, lossyURL, nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	w := workers.New(wjs, workers.Config{Bus: cfg})
	workers.RegisterDiagnostics(w)
	start(t, w)
	waitFor(t, 10*time.Second, "the second delivery", func() bool {
		return consumerInfo(t, js, "default").Delivered.Consumer >= 2
	})
	time.Sleep(3500 * time.Millisecond) // three AckWaits into the lookup
	if n := consumerInfo(t, js, "default").Delivered.Consumer; n != 2 {
		t.Errorf("%d deliveries while the worker looked the job up; want 2: the lookup went unheartbeated", n)
	}
}
