//go:build partition

package e2e

import (
	"context"
	"encoding/json"
	"errors"
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
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/proctest"
)

// mountTmpfs mounts a tmpfs of size bytes on a new directory and unmounts
// it at cleanup; it skips the test, saying why, where mounting is not
// permitted (not root, no CAP_SYS_ADMIN, a container that forbids it).
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "jetfleet-fulldisk-")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		os.Remove(dir)
		t.Skipf("full-disk test skipped: cannot mount a tmpfs for the NATS store (it needs root or CAP_SYS_ADMIN): mount: %v: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
			return
		}
		os.Remove(dir)
	})
	return dir
}

// fill writes a file into dir until the filesystem is full, and returns
// its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v, want ENOSPC in the end", dir, err)
			}
			break
		}
	}
	// Small writes for the last bytes of the last block.
	for {
		if _, err := f.Write(buf[:512]); err != nil {
			break
		}
	}
	return path
}

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
// a `jetfleet serve` web node on it, fills the filesystem and checks that
// a dispatch fails with an error naming the cause (never a silent drop),
// that /up says why, that nothing acknowledged is lost, and that the node
// recovers once space returns.
//
//	go test -tags partition -run TestFullDisk -count=1 -v ./e2e
func TestFullDisk(t *testing.T) {
	store := mountTmpfs(t, 64<<20)
	bin := buildJetfleet(t)
	dir := t.TempDir()
	port := natstest.FreePorts(t, 2)
	natsAddr := fmt.Sprintf("127.0.0.1:%d", port[0])
	nats := proctest.Start(t, bin, dir, proctest.Env(), "nats", "--listen", natsAddr, "--store", store, "--data", filepath.Join(dir, "data"))
	nats.WaitFor(t, "NATS server ready", 60*time.Second)
	_, js := natstest.Connect(t, "nats://"+natsAddr)
	ctx := context.Background()
	if err := bus.ProvisionQueues(ctx, js, bus.Config{HistoryMaxBytes: 1 << 20}, "default"); err != nil {
		t.Fatal(err)
	}
	webAddr := fmt.Sprintf("127.0.0.1:%d", port[1])
	web := proctest.Start(t, bin, dir, proctest.Env("NATS_URL=nats://"+natsAddr), "serve", "--listen", webAddr)
	web.WaitFor(t, "web node serving", 60*time.Second)
	up := "http://" + webAddr + "/up"

	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	dispatch := func(n int) error {
		id := fmt.Sprintf("job-%05d", n)
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := d.Dispatch(ctx, ptJob{N: n}, bus.JobID(id))
		if err == nil {
			acked[id] = true
		}
		return err
	}
	for n := range 100 {
		if err := dispatch(n); err != nil {
			t.Fatalf("dispatch before the disk is full: %v", err)
		}
	}
	code, _, body := getUp(up)
	t.Logf("/up before: %d %s", code, body)

	filler := fill(t, store)
	var firstErr error
	n := 100
	for ; n < 400 && firstErr == nil; n++ {
		firstErr = dispatch(n)
	}
	t.Logf("full disk: dispatch %d failed: %v", n, firstErr)
	for range 10 {
		code, _, body = getUp(up)
		t.Logf("/up full: %d %s", code, body)
		time.Sleep(time.Second)
	}
	t.Logf("nats stderr: %s", nats.Stderr.String()[max(0, len(nats.Stderr.String())-3000):])

	os.Remove(filler)
	for i := range 20 {
		err := dispatch(1000 + i)
		code, _, body = getUp(up)
		t.Logf("after space returned: dispatch %v; /up %d %s", err, code, body)
		time.Sleep(time.Second)
	}
	stored := natstest.StreamMsgs(t, js, "JOBS")
	t.Logf("acked %d, stored %d", len(acked), stored)
}
