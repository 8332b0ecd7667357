package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/proctest"
	"github.com/jetfleet/jetfleet/metrics"
)

// probe is GET url: its status and body, or an error.
func probe(url string) (int, string, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitProbe polls url until it answers want.
func waitProbe(t *testing.T, url string, want int, what string) string {
	t.Helper()
	var body string
	eventually(t, 30*time.Second, what, func() error {
		code, b, err := probe(url)
		if err != nil {
			return err
		}
		if body = b; code != want {
			return fmt.Errorf("%s: %d %s", url, code, strings.TrimSpace(b))
		}
		return nil
	})
	return body
}

// TestWorkerProbes runs `jetfleet work --health-listen` built with
// -tags jetfleet_debughooks, whose fetch loop blocks on a FIFO named by
// JETFLEET_DEBUG_BLOCK_FETCH until the test writes to it: /livez fails
// while the loop is stuck (--stuck-after 10s, the least) and passes once it runs
// again, and passes while NATS is down (each of its three queues' pulls
// then waits 5s: slow, not stuck); /readyz fails while the NATS server is down and passes once it is
// back on the same port and store; /metrics shares the probes' server when
// --metrics-listen names the same address.
func TestWorkerProbes(t *testing.T) {
	t.Parallel()
	bin, cleanup, err := proctest.BuildWith(".", "jetfleet-debughooks", "-tags", "jetfleet_debughooks")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	natsCfg := natsembed.Config{Listen: fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(t, 1)[0]), StoreDir: t.TempDir()}
	srv, err := natsembed.Start(natsCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown() })
	fifo := filepath.Join(t.TempDir(), "block-fetch")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(t, 1)[0])
	shortCtx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	short := exec.CommandContext(shortCtx, bin, "work", "--health-listen", addr, "--stuck-after", "5s")
	short.Env = testEnv("NATS_URL=" + srv.ClientURL())
	if out, err := short.CombinedOutput(); err == nil || !strings.Contains(string(out), "--stuck-after must be at least 10s (got 5s)") {
		t.Fatalf("work --stuck-after 5s: %v\n%s; want refused: a turn may wait 5s for a pull", err, out)
	}
	p := proctest.Start(t, bin, t.TempDir(), testEnv("NATS_URL="+srv.ClientURL(), "JETFLEET_DEBUG_BLOCK_FETCH="+fifo),
		"work", "--queue", "high,default,low", "--health-listen", addr, "--metrics-listen", addr, "--stuck-after", "10s")
	p.WaitFor(t, "worker started", 30*time.Second)
	base := "http://" + addr

	body := waitProbe(t, base+"/livez", http.StatusServiceUnavailable, "/livez fails while the fetch loop is blocked")
	if !strings.Contains(body, "fetch loop is stuck") {
		t.Errorf("/livez while stuck: %q", body)
	}
	if code, _, err := probe(base + "/readyz"); err != nil || code != http.StatusOK {
		t.Errorf("/readyz while the loop is stuck but NATS is fine: %d %v", code, err)
	}
	if err := os.WriteFile(fifo, []byte("go"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitProbe(t, base+"/livez", http.StatusOK, "/livez passes once the loop runs again")
	if code, body, err := probe(base + "/metrics"); err != nil || code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics on the shared server: %d %v", code, err)
	}

	srv.Shutdown()
	waitProbe(t, base+"/readyz", http.StatusServiceUnavailable, "/readyz fails with NATS down")
	// Each queue's pull waits up to 5s for a server that does not answer:
	// with NATS down a turn over three queues takes 15s, slow, not stuck,
	// and a restart would cure nothing.
	for end := time.Now().Add(16 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if code, body, err := probe(base + "/livez"); err != nil || code != http.StatusOK {
			t.Fatalf("/livez with NATS down: %d %q %v; want 200", code, strings.TrimSpace(body), err)
		}
	}
	if srv, err = natsembed.Start(natsCfg); err != nil {
		t.Fatal(err)
	}
	waitProbe(t, base+"/readyz", http.StatusOK, "/readyz passes once NATS is back")
	backAfterRestart(t, srv.ClientURL())
}

// backAfterRestart checks that a worker whose NATS server restarted is
// listed again and publishes its throughput samples again: the workers
// bucket and the samples stream live in memory, so the restart took
// them, and the worker makes them again.
func backAfterRestart(t *testing.T, url string) {
	t.Helper()
	_, js := natstest.Connect(t, url)
	in, err := bus.NewInspector(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second) // a presence record every 5 s, a sample every 10 s
	for {
		workers, werr := in.Workers(ctx)
		stream, serr := js.Stream(ctx, metrics.SamplesStream)
		var samples uint64
		if serr == nil {
			samples = stream.CachedInfo().State.Msgs
		}
		if werr == nil && len(workers) == 1 && samples > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after NATS came back: workers listed %d (%v), samples stream %v with %d samples; want the worker back in both", len(workers), werr, serr, samples)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
