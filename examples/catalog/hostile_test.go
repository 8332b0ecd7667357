package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
	"github.com/jetfleet/jetfleet/internal/proctest"
)

// peakRSS is a process's peak resident set (VmHWM), in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// postFile uploads one file from any goroutine (the client's helpers fail
// the test, which only the test's goroutine may do).
func postFile(c *ct.Client, itemID int64, f ct.File) error {
	for tries := 1; ; tries++ {
		status, b, err := postFileOnce(c, itemID, f)
		switch {
		case err != nil:
			return err
		case status == http.StatusAccepted:
			return nil
		case status == http.StatusServiceUnavailable && tries < 200:
			// The node reads a few uploads at once and asks the others
			// to come back (JETFLEET_MAX_UPLOADS_IN_FLIGHT).
			time.Sleep(50 * time.Millisecond)
		default:
			return fmt.Errorf("upload %s: %d %s", f.Name, status, b)
		}
	}
}

func postFileOnce(c *ct.Client, itemID int64, f ct.File) (int, []byte, error) {
	body, ctype := ct.UploadBody(f)
	req, err := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/items/%d/images", c.Base, itemID), body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("X-CSRF-Token", c.CSRF)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, nil
}

// TestWorkerMemoryStaysWithinBudget uploads, all at once, images made to
// exhaust a worker's memory (16-bit RGBA PNGs of 6320×6320 that pass the
// 40-megapixel check and decode to 320 MB each, CMYK and progressive CMYK
// JPEGs, a large paletted PNG, headers that declare huge sizes) together
// with images that fit, to a `catalog work` process whose image memory
// budget is 64 MiB. The worker must survive, refuse each oversized image
// as failed with a reason naming the file and the sizes, make the
// thumbnails of the others, and its peak RSS must stay within the budget
// plus a margin for everything that is not image work (the Go runtime,
// NATS and database clients, HTTP, garbage not yet collected).
func TestWorkerMemoryStaysWithinBudget(t *testing.T) {
	const budget, margin = 64 << 20, 96 << 20
	f := newWebFarm(t)
	_, base := f.serve("--drain-delay", "0s")
	w := proctest.Start(t, binary, t.TempDir(), append(append([]string(nil), f.env...), "JETFLEET_IMAGE_MEMORY_MB=64"), "work", "--concurrency", "10")
	w.WaitFor(t, "worker started", 60*time.Second)
	idle := peakRSS(t, w.Cmd.Process.Pid)

	c := ct.NewClient(t, base)
	c.Login("ann")
	lamp := c.CreateItem("Lamp", "")
	rgba16 := ct.PNG16(6320, 6320)
	refused := map[string][]byte{
		"rgba16-a.png":         rgba16,
		"rgba16-b.png":         rgba16,
		"rgba16-c.png":         rgba16,
		"cmyk.jpg":             ct.FlatJPEG(3000, 3000, 4, false),
		"progressive-cmyk.jpg": ct.FlatJPEG(2000, 2000, 4, true),
		"paletted.png":         ct.PalettedPNG(6000, 6000),
		"declared-6000.png":    ct.DeclaredPNG(6000, 6000),
		"declared-huge.png":    ct.DeclaredPNG(100000, 100000),
		"declared-huge.jpg":    ct.DeclaredJPEG(65000, 65000),
	}
	// Each of these needs about 50 MiB: together four times the budget.
	cmyk := ct.FlatJPEG(1200, 1200, 4, false)
	fits := map[string][]byte{"fits-rgba.png": ct.PNG(1500, 1000), "fits-ycc.jpg": ct.FlatJPEG(1600, 1200, 3, false)}
	for i := range 6 {
		fits[fmt.Sprintf("fits-cmyk-%d.jpg", i)] = cmyk
	}
	// Each upload from a session of its own: concurrent requests of one
	// session race to save it, which is not what this test is about.
	type upload struct {
		c *ct.Client
		f ct.File
	}
	var uploads []upload
	for _, set := range []map[string][]byte{refused, fits} {
		for name, data := range set {
			own := ct.NewClient(t, base)
			own.Login("ann")
			uploads = append(uploads, upload{own, ct.File{Name: name, Data: data}})
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(uploads))
	for _, u := range uploads {
		wg.Go(func() { errs <- postFile(u.c, lamp.ID, u.f) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	names := make([]string, 0, len(refused)+len(fits))
	for _, set := range []map[string][]byte{refused, fits} {
		for name := range set {
			names = append(names, name)
		}
	}
	it := c.WaitImages(lamp.ID, 60*time.Second, names...)
	select {
	case <-w.Done:
		t.Fatalf("the worker died: %v\n%s", w.Cmd.ProcessState, w.Stderr)
	default:
	}
	peak := peakRSS(t, w.Cmd.Process.Pid)
	t.Logf("worker peak RSS: %d MiB idle, %d MiB after the uploads (budget %d MiB + margin %d MiB)", idle>>20, peak>>20, budget>>20, margin>>20)
	for name := range refused {
		img, _ := ct.FindImage(it, name)
		if img.Status != "failed" || !strings.HasPrefix(img.Error, name+" ") || !strings.Contains(img.Error, "pixels") {
			t.Errorf("%s: %s %q; want failed with a reason naming the file and its size", name, img.Status, img.Error)
		}
		t.Logf("%s: %s", name, img.Error)
	}
	for name := range fits {
		if img, _ := ct.FindImage(it, name); img.Status != "ready" || len(img.Thumbnails) != 2 {
			t.Errorf("%s fits the budget but is %+v", name, img)
		}
	}
	if peak > budget+margin {
		t.Fatalf("the worker's peak RSS is %d MiB, more than the %d MiB budget plus the %d MiB margin", peak>>20, budget>>20, margin>>20)
	}
}

// TestKilledImageJobEndsFailed kills (SIGKILL) a `catalog work` process
// while it makes the thumbnails of an upload whose job has a single try;
// the next worker dead-letters the job unrun ("interrupted during its last
// attempt"), and the catalog's dead-letter hook marks the image failed
// with that reason and removes its original: no image stays "processing".
func TestKilledImageJobEndsFailed(t *testing.T) {
	f := newWebFarm(t)
	_, base := f.serve("--drain-delay", "0s")
	c := ct.NewClient(t, base)
	c.Login("ann")
	lamp := c.CreateItem("Lamp", "")
	args := []string{"work", "--tries", "1", "--ack-wait", "2s"}
	env := append(append([]string(nil), f.env...), "LOG_LEVEL=debug")
	first := proctest.Start(t, binary, t.TempDir(), env, args...)
	first.WaitFor(t, "worker started", 60*time.Second)
	// 24 megapixels: a second or so of resizing, long enough to be killed in.
	if code, body := c.Upload(lamp.ID, ct.File{Name: "big.jpg", Data: ct.FlatJPEG(6000, 4000, 3, false)}); code != http.StatusAccepted {
		t.Fatalf("upload: %d %s", code, body)
	}
	first.WaitFor(t, `"kind":"process-item-images","attempt":1`, 30*time.Second)
	if err := first.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-first.Done
	if img, _ := ct.FindImage(c.Item(lamp.ID, http.StatusOK), "big.jpg"); img.Status != "processing" {
		t.Fatalf("big.jpg is %s before the next worker: the kill came too late to test anything", img.Status)
	}
	proctest.Start(t, binary, t.TempDir(), env, args...)
	it := c.WaitImages(lamp.ID, 60*time.Second, "big.jpg")
	img, _ := ct.FindImage(it, "big.jpg")
	if img.Status != "failed" || !strings.Contains(img.Error, "interrupted during its last attempt") {
		t.Fatalf("after the kill, big.jpg is %+v; want failed as interrupted", img)
	}
	resp, body := c.Do(http.MethodGet, img.URL, nil, nil)
	if resp.StatusCode != http.StatusNotFound || bytes.HasPrefix(body, []byte{0xff, 0xd8}) {
		t.Fatalf("the failed image's original is still served: %d", resp.StatusCode)
	}
}
