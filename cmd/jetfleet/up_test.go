package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// assertTopology checks that the server js reaches holds JOBS, DLQ and
// one consumer per queue.
func assertTopology(t *testing.T, js jetstream.JetStream, queues ...string) jetstream.JetStream {
	t.Helper()
	ctx := context.Background()
	url := js.Conn().ConnectedUrl()
	s, err := js.Stream(ctx, bus.JobsStream)
	if err != nil {
		t.Fatalf("JOBS on %s: %v", url, err)
	}
	if _, err := js.Stream(ctx, bus.DLQStream); err != nil {
		t.Fatalf("DLQ on %s: %v", url, err)
	}
	var consumers []string
	for n := range s.ConsumerNames(ctx).Name() {
		consumers = append(consumers, n)
	}
	for _, q := range queues {
		if !slices.Contains(consumers, bus.ConsumerName(q)) {
			t.Errorf("consumer %s missing; have %v", bus.ConsumerName(q), consumers)
		}
	}
	return js
}

// TestUpThenDispatchFromTheSameDirectory is the newcomer's path: `up` in an
// empty directory starts NATS with its store under data/nats, provisions the
// bus, writes data/nats.url; `dispatch` run later from that directory with
// no NATS_URL enqueues on that server; SIGTERM stops `up` with exit 0; and a
// second `up` finds the job still stored.
func TestUpThenDispatchFromTheSameDirectory(t *testing.T) {
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(t, 1)[0])
	up := startProc(t, dir, testEnv(), "up", "--nats-listen", addr, "--no-workers")
	up.WaitFor(t, "jetfleet is up", 60*time.Second)

	url := readURLFile(t, dir)
	if url != "nats://"+addr {
		t.Fatalf("nats.url = %q, want nats://%s", url, addr)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "nats", "jetstream")); err != nil {
		t.Fatalf("JetStream store not under data/nats: %v", err)
	}
	js := assertTopology(t, connectUp(t, dir), "high", "default", "emails")

	r := runJF(t, dir, testEnv(), "", "dispatch", "emails", "send-welcome-email", `{"user_id":7}`, "--tries", "3")
	if r.Code != 0 {
		t.Fatalf("dispatch exit %d: %s", r.Code, r.Stderr)
	}
	id := strings.TrimSpace(r.Stdout)
	if id == "" || strings.Contains(id, "\n") {
		t.Fatalf("dispatch printed %q, want one job ID", r.Stdout)
	}
	assertStoredJob(t, js, "jobs.emails.send-welcome-email", `{"user_id":7}`, map[string]string{
		"Nats-Msg-Id": id, "Jetfleet-Tries": "3",
	})

	if code := up.Signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("up exited %d after SIGTERM, want 0; stderr:\n%s", code, up.Stderr)
	}
	if !strings.Contains(up.Stderr.String(), "jetfleet stopped") {
		t.Fatalf("up did not log its shutdown:\n%s", up.Stderr)
	}

	again := startProc(t, dir, testEnv(), "up", "--nats-listen", addr, "--no-workers")
	again.WaitFor(t, "jetfleet is up", 60*time.Second)
	js = connectUp(t, dir)
	assertStoredJob(t, js, "jobs.emails.send-welcome-email", `{"user_id":7}`, map[string]string{"Nats-Msg-Id": id, "Jetfleet-Tries": "3"})
	if code := again.Signal(t, syscall.SIGINT); code != 0 {
		t.Fatalf("up exited %d after SIGINT, want 0", code)
	}
}

// directGetHeader reports whether a direct get added header k to a stored
// message.
func directGetHeader(k string) bool {
	switch k {
	case "Nats-Stream", "Nats-Subject", "Nats-Sequence", "Nats-Time-Stamp":
		return true
	}
	return false
}

// assertStoredJob checks the last job stored on subject
// (jobs.<queue>.<kind>) in JOBS: that its own subject ends in its ID
// (want's Nats-Msg-Id), its body, and that its headers are exactly want
// (beside those a direct get adds).
func assertStoredJob(t *testing.T, js jetstream.JetStream, subject, body string, want map[string]string) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, bus.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, subject+".*")
	if err != nil {
		t.Fatalf("no job on %s.<id>: %v", subject, err)
	}
	if id := want[bus.HeaderMsgID]; m.Subject != subject+"."+id {
		t.Errorf("job stored on %s, want %s.%s", m.Subject, subject, id)
	}
	if string(m.Data) != body {
		t.Errorf("body on %s = %s, want %s", subject, m.Data, body)
	}
	for k, v := range want {
		if got := m.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	for k := range m.Header {
		if _, ok := want[k]; !ok && !directGetHeader(k) {
			t.Errorf("unexpected header %s = %q", k, m.Header.Get(k))
		}
	}
}

// occupy holds a loopback port for the test, as another NATS server would.
func occupy(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// TestUpFallsBackWhenTheDefaultPortIsTaken: when the default address is
// taken, `up` takes a free port, warns in the log and in plain words, and
// records the port it got, so `dispatch` from the directory still works. The
// default is pointed at a port the test holds through
// JETFLEET_NATS_DEFAULT_LISTEN, the documented setting of that default (the
// same code path as the built-in 127.0.0.1:4222).
func TestUpFallsBackWhenTheDefaultPortIsTaken(t *testing.T) {
	dir := t.TempDir()
	taken := occupy(t)
	up := startProc(t, dir, testEnv("JETFLEET_NATS_DEFAULT_LISTEN="+taken), "up", "--no-workers")
	up.WaitFor(t, "jetfleet is up", 60*time.Second)

	url := readURLFile(t, dir)
	if url == "nats://"+taken || !strings.HasPrefix(url, "nats://127.0.0.1:") {
		t.Fatalf("nats.url = %q; want another port on 127.0.0.1 than the taken %s", url, taken)
	}
	stderr := up.Stderr.String()
	for _, want := range []string{
		`"level":"warn"`,
		taken + " is taken",
		"jetfleet: WARNING: " + taken + " is taken (another NATS server?), so the embedded NATS server listens on " + url + " instead.",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	js := assertTopology(t, connectUp(t, dir), "high", "default", "emails")
	r := runJF(t, dir, testEnv(), "", "dispatch", "default", "ping", `{}`, "--id", "ping-1")
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != "ping-1" {
		t.Fatalf("dispatch: exit %d, stdout %q, stderr %s", r.Code, r.Stdout, r.Stderr)
	}
	assertStoredJob(t, js, "jobs.default.ping", `{}`, map[string]string{"Nats-Msg-Id": "ping-1"})
	if code := up.Signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("up exited %d after SIGTERM, want 0", code)
	}
}

// TestUpExplicitListenTakenFails: an address the user asked for is never
// silently replaced; `up` exits 1 naming it and the flag, and records no URL.
func TestUpExplicitListenTakenFails(t *testing.T) {
	dir := t.TempDir()
	taken := occupy(t)
	r := runJF(t, dir, testEnv(), "", "up", "--nats-listen", taken)
	if r.Code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", r.Code, r.Stderr)
	}
	want := "jetfleet up: start nats: cannot listen for NATS clients on " + taken + " (--nats-listen)"
	if !strings.Contains(r.Stderr, want) {
		t.Fatalf("stderr lacks %q:\n%s", want, r.Stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "nats.url")); !os.IsNotExist(err) {
		t.Fatalf("nats.url written after a failed start: %v", err)
	}
}

// TestUpUsesNATSURL: with NATS_URL set, `up` embeds nothing, provisions the
// bus on that server and leaves nats.url alone.
func TestUpUsesNATSURL(t *testing.T) {
	dir := t.TempDir()
	srv := natstest.Start(t)
	up := startProc(t, dir, testEnv("NATS_URL="+srv.ClientURL()), "up", "--queues", "high,reports")
	up.WaitFor(t, "jetfleet is up", 60*time.Second)
	if !strings.Contains(up.Stderr.String(), "none embedded") {
		t.Errorf("up did not say it embeds nothing:\n%s", up.Stderr)
	}
	_, js := natstest.Connect(t, srv.ClientURL())
	assertTopology(t, js, "high", "reports")
	for _, embedded := range []string{"nats", "nats.url", "nats.auth"} { // the SQLite read model is still there
		if _, err := os.Stat(filepath.Join(dir, "data", embedded)); !os.IsNotExist(err) {
			t.Errorf("up with NATS_URL created data/%s: %v", embedded, err)
		}
	}
	if code := up.Signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("up exited %d after SIGTERM, want 0", code)
	}
}

// TestNATSSingleNode: `jetfleet nats` alone is a JetStream server that
// records its URL, so `dispatch` from the same directory reaches it.
func TestNATSSingleNode(t *testing.T) {
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(t, 1)[0])
	n := startProc(t, dir, testEnv(), "nats", "--listen", addr, "--sync-interval", "always")
	n.WaitFor(t, "NATS server ready with JetStream", 60*time.Second)
	if url := readURLFile(t, dir); url != "nats://"+addr {
		t.Fatalf("nats.url = %q, want nats://%s", url, addr)
	}
	if !strings.Contains(n.Stderr.String(), `"sync":"always (fsync every write)"`) {
		t.Errorf("the sync policy is not logged:\n%s", n.Stderr)
	}
	r := runJF(t, dir, testEnv(), "", "dispatch", "default", "ping", `{"n":1}`, "--id", "p1")
	if r.Code != 0 {
		t.Fatalf("dispatch: exit %d: %s", r.Code, r.Stderr)
	}
	_, js := natstest.Connect(t, "nats://"+addr)
	assertStoredJob(t, js, "jobs.default.ping", `{"n":1}`, map[string]string{"Nats-Msg-Id": "p1"})
	if code := n.Signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("nats exited %d after SIGTERM, want 0", code)
	}
}
