package main

// The tests of this package build the jetfleet binary once (TestMain) and
// run it as real processes against real NATS servers on random loopback
// ports. They never touch a NATS server already running on the machine
// (often on 4222): every server address they use is one they picked.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/proctest"
	"github.com/jetfleet/jetfleet/node"
)

// binary is the jetfleet binary built by TestMain, shared by every test of
// the package.
var binary string

func TestMain(m *testing.M) { proctest.Main(m, ".", "jetfleet", &binary) }

// testEnv is proctest.Env: no jetfleet setting of the test process.
func testEnv(extra ...string) []string { return proctest.Env(extra...) }

// proc is a long-running jetfleet process (up, nats) started by a test.
type proc = proctest.Proc

// startProc runs the jetfleet binary with args in dir.
func startProc(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	return proctest.Start(t, binary, dir, env, args...)
}

// result is what a short jetfleet command left behind.
type result = proctest.Result

// runJF runs a short jetfleet command to completion.
func runJF(t *testing.T, dir string, env []string, stdin string, args ...string) result {
	t.Helper()
	return proctest.Run(t, binary, dir, env, stdin, args...)
}

// eventually is proctest.Eventually.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	proctest.Eventually(t, timeout, what, f)
}

// readURLFile returns the URL recorded in dir/data/nats.url.
func readURLFile(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "data", "nats.url"))
	if err != nil {
		t.Fatalf("nats.url: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// connectUp connects to the NATS server of the `up` that ran in dir, with
// the credentials it generated in dir/data/nats.auth.
func connectUp(t *testing.T, dir string) jetstream.JetStream {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "data", node.AuthFile))
	if err != nil {
		t.Fatalf("nats.auth: %v", err)
	}
	var user, password string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "NATS_USER="); ok {
			user = v
		}
		if v, ok := strings.CutPrefix(line, "NATS_PASSWORD="); ok {
			password = v
		}
	}
	_, js := natstest.Connect(t, readURLFile(t, dir), nats.UserInfo(user, password))
	return js
}
