package main

// The tests of this package build the jetfleet binary once (TestMain) and
// run it as real processes against real NATS servers on random loopback
// ports. They never touch a NATS server already running on the machine
// (often on 4222): every server address they use is one they picked.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the jetfleet binary built by TestMain, shared by every test of
// the package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "jetfleet-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "TestMain:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "jetfleet")
	build := exec.Command("go", "build", "-o", binary, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "TestMain: go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testEnv is the test process's environment without any setting jetfleet
// reads (NATS_*, JETFLEET_*, LOG_*, DB_*, SESSION_*), with JSON logs, plus
// extra KEY=VALUE entries.
func testEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		key, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(key, "NATS_") || strings.HasPrefix(key, "JETFLEET_") || strings.HasPrefix(key, "LOG_") ||
			strings.HasPrefix(key, "DB_") || strings.HasPrefix(key, "SESSION_") {
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "LOG_FORMAT=json"), extra...)
}

// syncBuffer is a bytes.Buffer safe to write from a process's pipe copier
// while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// proc is a long-running jetfleet process (up, nats) started by a test.
type proc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr *syncBuffer
	done           chan struct{} // closed when the process has exited
}

// startProc runs the binary with args in dir. At cleanup a process still
// running is killed; when the test failed, its stderr is logged.
func startProc(t *testing.T, dir string, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: strings.Join(args, " "), stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Dir, p.cmd.Env = dir, env
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start jetfleet %s: %v", p.name, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("stderr of jetfleet %s:\n%s", p.name, p.stderr)
		}
	})
	return p
}

// waitFor waits until the process's stderr contains s.
func (p *proc) waitFor(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.stderr.String(), s) {
		select {
		case <-p.done:
			t.Fatalf("jetfleet %s exited (%v) before logging %q; stderr:\n%s", p.name, p.cmd.ProcessState, s, p.stderr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("jetfleet %s did not log %q within %s; stderr:\n%s", p.name, s, timeout, p.stderr)
		}
	}
}

// signal sends sig and returns the exit code, failing the test when the
// process does not exit within 30 seconds.
func (p *proc) signal(t *testing.T, sig syscall.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal jetfleet %s: %v", p.name, err)
	}
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-time.After(30 * time.Second):
		t.Fatalf("jetfleet %s still running 30s after %v", p.name, sig)
		return -1
	}
}

// result is what a short jetfleet command left behind.
type result struct {
	stdout, stderr string
	code           int
}

// runJF runs a short jetfleet command to completion (60 s at most) with
// stdin as its standard input.
func runJF(t *testing.T, dir string, env []string, stdin string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("jetfleet %s: %v", strings.Join(args, " "), err)
	}
	return result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
}

// eventually calls f until it returns nil, for at most timeout.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
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
