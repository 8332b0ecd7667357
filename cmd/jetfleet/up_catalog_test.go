package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// startUp runs `jetfleet up` in a fresh directory on free ports and returns
// the process, its directory and the HTTP URL it printed.
func startUp(t *testing.T, env []string, args ...string) (*proc, string, string) {
	t.Helper()
	dir := t.TempDir()
	ports := natstest.FreePorts(t, 2)
	args = append([]string{"up", "--listen", fmt.Sprintf("127.0.0.1:%d", ports[0]),
		"--nats-listen", fmt.Sprintf("127.0.0.1:%d", ports[1])}, args...)
	up := startProc(t, dir, env, args...)
	up.WaitFor(t, "jetfleet is up", 60*time.Second)
	return up, dir, printedURL(t, up)
}

// printedURL is the URL `up` printed on stdout, without its trailing slash.
func printedURL(t *testing.T, up *proc) string {
	t.Helper()
	// up logs "jetfleet is up" on stderr just before it prints the line on
	// stdout, another pipe: a caller that waited for the log may be here
	// first.
	re := regexp.MustCompile(`jetfleet is up: (http://\S+)/\n`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(up.Stdout.String()); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("up printed no URL on stdout:\n%s", up.Stdout)
		}
	}
}

// TestUpCatalogEndToEnd is the newcomer's five minutes on the real binary:
// `up` in an empty directory, log in (the welcome email arrives in the
// outbox through the emails queue), create an item, upload a real PNG and
// JPEG, poll until the worker made their thumbnails, fetch them and check
// their pixel widths; a text file uploaded as an image is dead-lettered
// with a reason naming it; the HTML page renders the item; Ctrl-C exits 0.
func TestUpCatalogEndToEnd(t *testing.T) {
	up, dir, base := startUp(t, testEnv())
	c := ct.NewClient(t, base)
	if r := c.Login("ann"); !r.Created || r.WelcomeJob == "" {
		t.Fatalf("first login: %+v", r)
	}
	eventually(t, 30*time.Second, "welcome email in the outbox", func() error {
		body := c.JSON(http.MethodGet, "/me", nil, http.StatusOK, nil)
		if !strings.Contains(string(body), "Welcome to the jetfleet catalog, ann!") {
			return fmt.Errorf("/me: %s", body)
		}
		return nil
	})

	lamp := c.CreateItem("Lamp", "brass, 1930s")
	code, body := c.Upload(lamp.ID, ct.File{Name: "lamp.png", Data: ct.PNG(800, 600)}, ct.File{Name: "lamp.jpg", Data: ct.JPEG(1200, 900)})
	if code != http.StatusAccepted {
		t.Fatalf("upload: %d %s", code, body)
	}
	it := c.WaitImages(lamp.ID, 60*time.Second, "lamp.png", "lamp.jpg")
	for _, name := range []string{"lamp.png", "lamp.jpg"} {
		img, _ := ct.FindImage(it, name)
		if img.Status != "ready" || len(img.Thumbnails) != 2 {
			t.Fatalf("%s: %+v", name, img)
		}
		for _, th := range img.Thumbnails {
			resp, data := c.Do(http.MethodGet, th.URL, nil, nil)
			if resp.StatusCode != http.StatusOK || ct.DecodedWidth(t, data) != th.Size {
				t.Fatalf("%s: status %d, width %d, want %d", th.URL, resp.StatusCode, ct.DecodedWidth(t, data), th.Size)
			}
		}
	}

	code, body = c.Upload(lamp.ID, ct.File{Name: "notes.txt", Data: []byte("shopping list\n")})
	if code != http.StatusAccepted {
		t.Fatalf("upload notes.txt: %d %s", code, body)
	}
	js := connectUp(t, dir)
	in, err := bus.NewInspector(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "notes.txt dead-lettered", func() error {
		jobs, err := in.FailedJobs(context.Background(), bus.FailedFilter{Queue: "high", Kind: "process-item-images"})
		if err != nil || len(jobs) != 1 || !strings.Contains(jobs[0].Error, "notes.txt is not a JPEG or PNG image") {
			return fmt.Errorf("failed jobs %+v (%v)", jobs, err)
		}
		return nil
	})

	resp, page := c.Do(http.MethodGet, fmt.Sprintf("/view/items/%d", lamp.ID), nil, http.Header{"Accept": {"text/html"}})
	for _, want := range []string{"<h2>Lamp</h2>", "brass, 1930s", `src="/items/1/images/lamp.png?size=160"`, "notes.txt is not a JPEG or PNG image"} {
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), want) {
			t.Fatalf("item page (%d) lacks %q:\n%s", resp.StatusCode, want, page)
		}
	}
	if code := up.Signal(t, syscall.SIGINT); code != 0 {
		t.Fatalf("up exited %d after Ctrl-C, want 0", code)
	}
}

// TestUpCatalogBadInput sends every bad request of the catalog to the real
// binary: each gets its 4xx and a message, never a 500 or a crash.
func TestUpCatalogBadInput(t *testing.T) {
	up, _, base := startUp(t, testEnv("JETFLEET_MAX_UPLOAD_MB=1", "JETFLEET_MAX_UPLOAD_FILES=3"), "--no-workers")
	bob := ct.NewClient(t, base)
	bob.Login("bob")
	ann := ct.NewClient(t, base)
	ann.Login("ann")
	own, bobs := ann.CreateItem("mine", ""), bob.CreateItem("bob's", "")
	ct.RunBadRequests(t, ann, ct.BadRequests(own.ID, bobs.ID, 1<<20, 3))
	if strings.Contains(up.Stderr.String(), `"level":"error"`) {
		t.Errorf("bad input logged errors:\n%s", up.Stderr)
	}
	if code := up.Signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("up exited %d, want 0", code)
	}
}

// TestUpHTTPListen: when the default HTTP address is taken, `up` serves on
// a free port and prints the URL it really serves; an address given with
// --listen that cannot be bound fails with a message naming it.
func TestUpHTTPListen(t *testing.T) {
	taken := occupy(t)
	up, _, _ := startUpDefaultHTTP(t, testEnv("JETFLEET_HTTP_DEFAULT_LISTEN="+taken))
	url := printedURL(t, up)
	if url == "http://"+taken || !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("up serves %s; want a free port, not the taken %s", url, taken)
	}
	if !strings.Contains(up.Stderr.String(), "jetfleet: WARNING: "+taken+" is taken, so the web node listens on "+url+"/ instead") {
		t.Errorf("no plain warning on stderr:\n%s", up.Stderr)
	}
	resp, err := http.Get(url + "/up")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/up: %v %v", url, resp, err)
	}
	resp.Body.Close()
	if code := up.Signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("up exited %d, want 0", code)
	}

	r := runJF(t, t.TempDir(), testEnv(), "", "up", "--listen", taken, "--nats-listen", "127.0.0.1:0")
	want := "jetfleet up: start http: cannot listen for HTTP on " + taken + " (--listen)"
	if r.Code != 1 || !strings.Contains(r.Stderr, want) {
		t.Fatalf("exit %d, want 1 with %q; stderr:\n%s", r.Code, want, r.Stderr)
	}
}

// startUpDefaultHTTP runs `up` with no --listen flag.
func startUpDefaultHTTP(t *testing.T, env []string) (*proc, string, string) {
	t.Helper()
	dir := t.TempDir()
	up := startProc(t, dir, env, "up", "--nats-listen", fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(t, 1)[0]), "--no-workers")
	up.WaitFor(t, "jetfleet is up", 60*time.Second)
	return up, dir, printedURL(t, up)
}

// TestARefusedUploadKeepsTheOrdinaryReadTimeout: the upload route's longer
// deadline (node.AllowUpload) is for an owner's upload, not for anyone's:
// a client with no session that sends the headers of a chunked upload
// and then nothing gets its 401 once the 1 s read timeout has drained the
// body, not after the 1 s + 32 MiB at 64 KiB/s (513 s) an upload may take.
func TestARefusedUploadKeepsTheOrdinaryReadTimeout(t *testing.T) {
	_, _, base := startUp(t, testEnv("JETFLEET_HTTP_READ_TIMEOUT=1"))
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "POST /items/1/images HTTP/1.1\r\nHost: test\r\nContent-Type: multipart/form-data; boundary=B\r\nTransfer-Encoding: chunked\r\n\r\n")
	if err := c.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	status, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("no answer within 30 s to an anonymous upload that sends no body (read timeout 1 s): %v", err)
	}
	if !strings.Contains(status, "401") {
		t.Fatalf("anonymous upload: %q, want 401", status)
	}
}
