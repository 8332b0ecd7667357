package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/node"
)

// TestUpNATSRequiresCredentials: `up`'s embedded NATS server refuses
// clients without the credentials it generated on its first start in
// data/nats.auth (mode 0600, kept across restarts); commands run from the
// directory use them by themselves; elsewhere a wrong password is refused
// without being printed, and the right one in NATS_URL is logged
// redacted. --no-auth runs the server open.
func TestUpNATSRequiresCredentials(t *testing.T) {
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(t, 1)[0])
	up := startProc(t, dir, testEnv(), "up", "--nats-listen", addr, "--no-workers")
	up.WaitFor(t, "jetfleet is up", 60*time.Second)

	authPath := filepath.Join(dir, "data", node.AuthFile)
	st, err := os.Stat(authPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("data/nats.auth: %v, mode %v; want mode 0600", err, st.Mode().Perm())
	}
	auth, _ := os.ReadFile(authPath)
	password := ""
	for _, line := range strings.Split(string(auth), "\n") {
		if v, ok := strings.CutPrefix(line, "NATS_PASSWORD="); ok {
			password = v
		}
	}
	if len(password) < 24 || strings.Contains(readURLFile(t, dir), password) || strings.Contains(up.Stderr.String(), password) {
		t.Fatalf("password %q: too short, or in nats.url or the log", password)
	}
	for _, opts := range [][]nats.Option{nil, {nats.UserInfo(node.LocalNATSUser, "wrong-password")}} {
		if nc, err := nats.Connect("nats://"+addr, opts...); err == nil {
			nc.Close()
			t.Fatal("the embedded server accepted a client without its credentials")
		} else if !strings.Contains(err.Error(), "Authorization Violation") {
			t.Fatalf("connect without credentials: %v, want an authorization violation", err)
		}
	}
	if r := runJF(t, dir, testEnv(), "", "queue", "stats"); r.Code != 0 {
		t.Fatalf("queue stats from the directory: exit %d: %s", r.Code, r.Stderr)
	}
	wrong := "nats://" + node.LocalNATSUser + ":Wr0ngPassw0rd@" + addr
	if r := runJF(t, t.TempDir(), testEnv("NATS_URL="+wrong), "", "queue", "stats"); r.Code != 1 ||
		!strings.Contains(r.Stderr, "Authorization Violation") || strings.Contains(r.Stderr, "Wr0ngPassw0rd") {
		t.Fatalf("queue stats with a wrong password: exit %d, want 1 with an authorization error that does not show it:\n%s", r.Code, r.Stderr)
	}
	right := "nats://" + node.LocalNATSUser + ":" + password + "@" + addr
	serve := startProc(t, t.TempDir(), testEnv("NATS_URL="+right), "serve", "--listen", "127.0.0.1:0")
	serve.WaitFor(t, "web node serving", 60*time.Second)
	if strings.Contains(serve.Stderr.String(), password) {
		t.Fatalf("serve logged the password of NATS_URL:\n%s", serve.Stderr)
	}
	serve.Signal(t, syscall.SIGTERM)

	up.Signal(t, syscall.SIGTERM)
	again := startProc(t, dir, testEnv(), "up", "--nats-listen", addr, "--no-workers")
	again.WaitFor(t, "jetfleet is up", 60*time.Second)
	if after, _ := os.ReadFile(authPath); string(after) != string(auth) {
		t.Fatal("a second start changed data/nats.auth")
	}
	connectUp(t, dir)
	again.Signal(t, syscall.SIGTERM)

	open := t.TempDir()
	openAddr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(t, 1)[0])
	noAuth := startProc(t, open, testEnv(), "up", "--nats-listen", openAddr, "--no-workers", "--no-auth")
	noAuth.WaitFor(t, "jetfleet is up", 60*time.Second)
	natstest.Connect(t, "nats://"+openAddr)
	if _, err := os.Stat(filepath.Join(open, "data", node.AuthFile)); !os.IsNotExist(err) {
		t.Errorf("--no-auth wrote data/nats.auth: %v", err)
	}
}
