package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/proctest"
	"github.com/jetfleet/jetfleet/workers"
)

// natsCLIVersion is the nats CLI the README's recipes are written for and
// CI installs: go install github.com/nats-io/natscli/nats@v0.5.0
const natsCLIVersion = "v0.5.0"

// findNatsCLI returns the nats CLI from PATH or from Go's bin directory,
// or skips the test saying how to install it.
func findNatsCLI(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nats"); err == nil {
		return p
	}
	var dirs []string
	if gobin, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimRight(string(gobin), "\n"), "\n")
		if lines[0] != "" {
			dirs = append(dirs, lines[0])
		}
		if len(lines) > 1 {
			dirs = append(dirs, filepath.Join(lines[1], "bin"))
		}
	}
	for _, d := range dirs {
		if p := filepath.Join(d, "nats"); isExecutable(p) {
			return p
		}
	}
	t.Skipf("the nats CLI is not installed (not on PATH nor in %v); CI installs it with: go install github.com/nats-io/natscli/nats@%s", dirs, natsCLIVersion)
	return ""
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// natsCLI runs the nats CLI's recipes against one server, with no user
// configuration (contexts) in the way.
type natsCLI struct {
	t          *testing.T
	bin, url   string
	env        []string
	configHome string
}

func newNatsCLI(t *testing.T, url string) *natsCLI {
	bin := findNatsCLI(t)
	home := t.TempDir()
	n := &natsCLI{t: t, bin: bin, url: url, configHome: home,
		env: testEnv("HOME="+home, "XDG_CONFIG_HOME="+home, "NO_COLOR=1")}
	if out, err := exec.Command(bin, "--version").CombinedOutput(); err == nil {
		t.Logf("nats CLI %s at %s (the recipes are written for %s)", strings.TrimSpace(string(out)), bin, natsCLIVersion)
	}
	return n
}

// run runs `nats --server <url> args...` to completion.
func (n *natsCLI) run(args ...string) string {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.bin, append([]string{"--server", n.url}, args...)...)
	cmd.Env = n.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		n.t.Fatalf("nats %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// runInTerminal runs the recipe under a pseudo-terminal (script(1)):
// `nats stream view` pages interactively and refuses to run without one.
// ok is false, and the recipe is left out with a note, when the machine
// has no script(1).
func (n *natsCLI) runInTerminal(args ...string) (out string, ok bool) {
	n.t.Helper()
	script, err := exec.LookPath("script")
	if err != nil {
		n.t.Logf("NOT RUN: nats %s needs a terminal and script(1) (util-linux) is missing", strings.Join(args, " "))
		return "", false
	}
	line := shellQuote(n.bin) + " --server " + shellQuote(n.url)
	for _, a := range args {
		line += " " + shellQuote(a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, script, "-q", "-e", "-c", line, "/dev/null")
	cmd.Env = n.env
	b, err := cmd.CombinedOutput()
	if err != nil {
		n.t.Fatalf("nats %s (in a terminal): %v\n%s", strings.Join(args, " "), err, b)
	}
	return strings.ReplaceAll(string(b), "\r\n", "\n"), true
}

func mustContain(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s: output lacks %q:\n%s", what, w, out)
		}
	}
}

// The operations guide's nats CLI recipes, each run as written against a
// server holding real jetfleet data.
func TestQueueNatsCLIRecipes(t *testing.T) {
	f := newFleet(t)
	var url string
	for _, kv := range f.env {
		if u, ok := strings.CutPrefix(kv, "NATS_URL="); ok {
			url = u
		}
	}
	n := newNatsCLI(t, url)
	w := f.startWorker(nil, "--queue", "high,default", "--tries", "1")

	// Watch dead letters arrive: nats sub 'dlq.>' (a plain subscription).
	sub := exec.Command(n.bin, "--server", url, "sub", "dlq.>", "--count", "1")
	sub.Env = n.env
	subOut := &proctest.Buffer{}
	sub.Stdout, sub.Stderr = subOut, subOut
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	subDone := make(chan error, 1)
	go func() { subDone <- sub.Wait() }()
	t.Cleanup(func() { _ = sub.Process.Kill() })
	eventually(t, 10*time.Second, "nats sub to subscribe", func() error {
		if !strings.Contains(subOut.String(), "Subscribing on dlq.>") {
			return errString("not yet")
		}
		return nil
	})
	id := f.dispatch("high", workers.Fail{Message: "smtp: connection refused"})
	select {
	case err := <-subDone:
		if err != nil {
			t.Fatalf("nats sub: %v\n%s", err, subOut)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("nats sub saw no dead letter:\n%s", subOut)
	}
	mustContain(t, "nats sub 'dlq.>'", subOut.String(), `Received on "dlq.high.jetfleet-fail.`+id+`"`,
		"Jetfleet-Error: smtp: connection refused", "Jetfleet-Job-Id: "+id, `{"message":"smtp: connection refused"}`)

	// List dead letters: nats stream view DLQ.
	if view, ok := n.runInTerminal("stream", "view", "DLQ"); ok {
		mustContain(t, "nats stream view DLQ", view, "[1] Subject: dlq.high.jetfleet-fail."+id,
			"Jetfleet-Error: smtp: connection refused", "Jetfleet-Attempts: 1", `{"message":"smtp: connection refused"}`)
	}

	// One dead letter with its headers: nats stream get DLQ <seq>.
	get := n.run("stream", "get", "DLQ", "1")
	mustContain(t, "nats stream get DLQ 1", get, "Item: DLQ#1", "dlq.high.jetfleet-fail."+id,
		"Jetfleet-Job-Id: "+id, "Jetfleet-Origin: JOBS:1", `{"message":"smtp: connection refused"}`)

	// Stored dead letters without a terminal: nats sub 'dlq.>' --all --count 1.
	mustContain(t, "nats sub 'dlq.>' --all --count 1", n.run("sub", "dlq.>", "--all", "--count", "1"),
		"dlq.high.jetfleet-fail."+id, `{"message":"smtp: connection refused"}`)

	// Consumer state: nats consumer info JOBS q-high.
	info := n.run("consumer", "info", "JOBS", "q-high")
	mustContain(t, "nats consumer info JOBS q-high", info, "Name: q-high", "Filter Subject: jobs.high.>",
		"Ack Policy: Explicit", "Unprocessed Messages: 0")

	// Publish a job from the shell: nats pub jobs.default.jetfleet-noop '{}'.
	pub := n.run("pub", "jobs.default.jetfleet-noop", "{}")
	mustContain(t, "nats pub", pub, `Published 2 bytes to "jobs.default.jetfleet-noop"`)
	numeric := regexp.MustCompile(`^[0-9]+$`)
	eventually(t, 10*time.Second, "the published job to run", func() error {
		for id := range f.successes() {
			if numeric.MatchString(id) { // a job without headers gets its stream sequence as ID
				return nil
			}
		}
		return errString("not yet")
	})

	// nats consumer next acknowledges by default: on a work queue that
	// deletes the job. --no-ack only looks (the job comes back after AckWait).
	f.ensureQueues("low") // a queue no worker serves
	first, second := f.dispatch("low", workers.Noop{}), f.dispatch("low", workers.Noop{})
	mustContain(t, "nats consumer next --no-ack", n.run("consumer", "next", "JOBS", "q-low", "--no-ack"), "Nats-Msg-Id: "+first)
	if left := f.streamMsgs(bus.JobsStream); left != 2 {
		t.Fatalf("after next --no-ack JOBS holds %d, want both low jobs", left)
	}
	mustContain(t, "nats consumer next", n.run("consumer", "next", "JOBS", "q-low"), "Nats-Msg-Id: "+second, "Acknowledged message")
	if left := f.streamMsgs(bus.JobsStream); left != 1 {
		t.Fatalf("after next (acknowledging) JOBS holds %d, want 1: the acknowledged job is gone", left)
	}

	// Pause state: nats kv get jetfleet_queues high.
	if r := f.jf("queue", "pause", "high"); r.Code != 0 {
		t.Fatalf("pause: %s", r.Stderr)
	}
	w.WaitFor(t, "queue paused", 5*time.Second)
	mustContain(t, "nats kv get "+bus.PauseBucket+" high", n.run("kv", "get", bus.PauseBucket, "high"), bus.PausedValue)
	// Workers attached: nats kv ls jetfleet_workers.
	mustContain(t, "nats kv ls "+bus.WorkersBucket, n.run("kv", "ls", bus.WorkersBucket), "-"+strconv.Itoa(w.Cmd.Process.Pid)+"-")
}

type errString string

func (e errString) Error() string { return string(e) }
