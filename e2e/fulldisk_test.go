//go:build partition

package e2e

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/proctest"
	"github.com/jetfleet/jetfleet/internal/tmpfstest"
)

// upReport is what /up answers, the parts this test reads.
type upReport struct {
	Status string `json:"status"`
	Checks map[string]struct {
		Status string `json:"status"`
		Error  string `json:"error"`
	} `json:"checks"`
}

func getUp(url string) (int, upReport, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, upReport{}, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var r upReport
	json.Unmarshal(b, &r)
	return resp.StatusCode, r, string(b)
}

// TestFullDisk runs a `jetfleet nats` node whose store is a small tmpfs and
// a `jetfleet serve` web node on it (NATS_MONITOR_URL set), fills the
// filesystem with another file, as a runaway log would, and checks that:
//
//   - dispatches fail with an error (bus.ErrNotAcknowledged), never a
//     silent drop: every acknowledged job is in JOBS at the end;
//
//   - /up names the cause (the nats.server check: the server's own
//     "write error: ... no space left on device");
//
//   - once space returns, the node recovers by itself, with no restart by
//     the test: nats-server keeps a stream's write error until it
//     restarts, so `jetfleet nats` restarts its embedded server in the
//     process when it sees free space again (natsembed.WatchStore);
//     dispatches are acknowledged again and /up is clean.
//
//     go test -tags partition -run '^TestFullDisk$' -count=1 -v ./e2e
func TestFullDisk(t *testing.T) {
	store := tmpfstest.New(t, 64<<20)
	bin := buildJetfleet(t)
	dir := t.TempDir()
	port := natstest.FreePorts(t, 3)
	natsAddr, monitorAddr := fmt.Sprintf("127.0.0.1:%d", port[0]), fmt.Sprintf("127.0.0.1:%d", port[2])
	natsArgs := []string{"nats", "--listen", natsAddr, "--store", store, "--data", filepath.Join(dir, "data"), "--monitor-listen", monitorAddr}
	nats := proctest.Start(t, bin, dir, proctest.Env(), natsArgs...)
	nats.WaitFor(t, "NATS server ready", 60*time.Second)
	_, js := natstest.Connect(t, "nats://"+natsAddr)
	ctx := context.Background()
	if err := bus.ProvisionQueues(ctx, js, bus.Config{HistoryMaxBytes: 1 << 20, FailedMaxBytes: 1 << 20}, "default"); err != nil {
		t.Fatal(err)
	}
	webAddr := fmt.Sprintf("127.0.0.1:%d", port[1])
	web := proctest.Start(t, bin, dir, proctest.Env("NATS_URL=nats://"+natsAddr, "NATS_MONITOR_URL=http://"+monitorAddr), "serve", "--listen", webAddr)
	web.WaitFor(t, "web node serving", 60*time.Second)
	up := "http://" + webAddr + "/up?format=json"

	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	dispatch := func(n int, timeout time.Duration) error {
		id := fmt.Sprintf("job-%05d", n)
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		_, err := d.Dispatch(ctx, ptJob{N: n}, bus.JobID(id))
		if err == nil {
			acked[id] = true
		}
		return err
	}
	for n := range 100 {
		if err := dispatch(n, 10*time.Second); err != nil {
			t.Fatalf("dispatch before the disk is full: %v", err)
		}
	}
	waitUp(t, up, "before the disk fills", func(code int, r upReport) bool {
		return code == http.StatusOK && r.Checks["nats.server"].Status == "ok"
	})

	filler := tmpfstest.Fill(t, store)
	n, failed := 100, 0
	var firstErr error
	for ; n < 400 && failed < 3; n++ { // the first writes may still fit in a block
		if err := dispatch(n, 5*time.Second); err != nil {
			failed++
			firstErr = cmp.Or(firstErr, err)
			if !errors.Is(err, bus.ErrNotAcknowledged) {
				t.Errorf("dispatch on a full disk: %v, want an error wrapping bus.ErrNotAcknowledged", err)
			}
		}
	}
	if firstErr == nil {
		t.Fatalf("%d dispatches on a full disk all acknowledged", n-100)
	}
	if !strings.Contains(firstErr.Error(), "disk full") {
		t.Errorf("dispatch on a full disk: %q, want it to name a full disk among the causes", firstErr)
	}
	t.Logf("full disk: %d dispatches acknowledged, then: %v", len(acked), firstErr)
	r := waitUp(t, up, "with the disk full", func(code int, r upReport) bool {
		return strings.Contains(r.Checks["nats.server"].Error, "no space left on device")
	})
	t.Logf("full disk: /up %s, nats.server: %s", r.Status, r.Checks["nats.server"].Error)

	if strings.Contains(nats.Stderr.String(), "embedded NATS server restarted") {
		t.Fatal("the NATS node restarted its server while the disk was still full")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	// No restart by the test: the node sees the space come back and
	// restarts its embedded server itself.
	for {
		n++
		err := dispatch(n, 500*time.Millisecond)
		if err == nil {
			break
		}
		if time.Since(freed) > 90*time.Second {
			t.Fatalf("dispatch 90s after space came back, with no restart by the test: %v", err)
		}
	}
	recovered := time.Since(freed)
	nats.WaitFor(t, "embedded NATS server restarted", 10*time.Second)
	t.Logf("recovered by itself: a dispatch acknowledged %.1fs after space came back (the node restarted its embedded server)", recovered.Seconds())
	for range 20 {
		n++
		if err := dispatch(n, 10*time.Second); err != nil {
			t.Fatalf("dispatch after recovery: %v", err)
		}
	}
	waitUp(t, up, "after recovery", func(code int, r upReport) bool {
		return code == http.StatusOK && r.Checks["nats.server"].Status == "ok"
	})
	checkStored(t, js, acked)
}

// waitUp polls /up until ok accepts its answer, for at most 30 s.
func waitUp(t *testing.T, url, when string, ok func(int, upReport) bool) upReport {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, r, body := getUp(url)
		if ok(code, r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("/up %s: %d %s", when, code, body)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// checkStored fails unless every acknowledged job is in JOBS.
func checkStored(t *testing.T, js jetstream.JetStream, acked map[string]bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "JOBS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("reading JOBS #%d: %v", seq, err)
		}
		stored[cmp.Or(m.Header.Get("Jetfleet-Job-Id"), m.Header.Get("Nats-Msg-Id"))] = true
	}
	want := info.State.Msgs
	var lost []string
	for id := range acked {
		if !stored[id] {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d of %d acknowledged jobs are not in JOBS (LOST): %v", len(lost), len(acked), lost)
	}
	t.Logf("stored: all %d acknowledged jobs are in JOBS (%d messages)", len(acked), want)
}
