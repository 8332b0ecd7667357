// Package proctest runs built binaries as real processes in tests: jetfleet
// itself, the examples, the e2e topology. It builds a package once, starts
// long-running processes whose output a test can wait on, runs short
// commands to completion, and gives them an environment free of the
// settings jetfleet reads, so a developer's NATS_URL or DB_* never leaks
// into a test.
package proctest

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

// Build compiles the package pkg (a path as `go build` takes it) into a
// temporary directory and returns the binary's path and a cleanup. It is
// meant for TestMain, so it reports errors instead of failing a test.
func Build(pkg, name string) (bin string, cleanup func(), err error) {
	return BuildWith(pkg, name)
}

// BuildWith is Build with more `go build` flags ("-tags", "x").
func BuildWith(pkg, name string, flags ...string) (bin string, cleanup func(), err error) {
	dir, err := os.MkdirTemp("", "jetfleet-bin-")
	if err != nil {
		return "", nil, err
	}
	bin = filepath.Join(dir, name)
	args := append(append([]string{"build", "-o", bin}, flags...), pkg)
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return "", nil, fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}

// Main is a TestMain for a package whose tests run its own binary: it
// builds pkg as name, stores the binary's path in *bin, runs the tests,
// removes the binary and exits with the tests' status.
func Main(m *testing.M, pkg, name string, bin *string) {
	path, cleanup, err := Build(pkg, name)
	if err != nil {
		fmt.Fprintln(os.Stderr, "TestMain:", err)
		os.Exit(1)
	}
	*bin = path
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// Env is the test process's environment without any setting jetfleet
// reads (NATS_*, JETFLEET_*, LOG_*, DB_*, SESSION_*, OTEL_*), with JSON
// logs, plus extra KEY=VALUE entries.
func Env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		key, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(key, "NATS_") || strings.HasPrefix(key, "JETFLEET_") || strings.HasPrefix(key, "LOG_") ||
			strings.HasPrefix(key, "DB_") || strings.HasPrefix(key, "SESSION_") || strings.HasPrefix(key, "OTEL_") {
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "LOG_FORMAT=json"), extra...)
}

// Buffer is a bytes.Buffer safe to write from a process's pipe copier
// while the test reads it.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Proc is a long-running process started by a test.
type Proc struct {
	// Name is the command line after the binary, for messages.
	Name           string
	Cmd            *exec.Cmd
	Stdout, Stderr *Buffer
	// Done is closed when the process has exited.
	Done chan struct{}
}

// Start runs bin with args in dir. At cleanup a process still running is
// killed; when the test failed, its stderr is logged.
func Start(t testing.TB, bin, dir string, env []string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Name: filepath.Base(bin) + " " + strings.Join(args, " "), Stdout: &Buffer{}, Stderr: &Buffer{}, Done: make(chan struct{})}
	p.Cmd = exec.Command(bin, args...)
	p.Cmd.Dir, p.Cmd.Env = dir, env
	p.Cmd.Stdout, p.Cmd.Stderr = p.Stdout, p.Stderr
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.Name, err)
	}
	go func() {
		p.Cmd.Wait()
		close(p.Done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.Done:
		default:
			p.Cmd.Process.Kill()
			<-p.Done
		}
		if t.Failed() {
			t.Logf("stderr of %s:\n%s", p.Name, p.Stderr)
		}
	})
	return p
}

// WaitFor waits until the process's stderr contains s, failing the test
// when the process exits first or timeout passes.
func (p *Proc) WaitFor(t testing.TB, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(p.Stderr.String(), s) {
		select {
		case <-p.Done:
			t.Fatalf("%s exited (%v) before logging %q; stderr:\n%s", p.Name, p.Cmd.ProcessState, s, p.Stderr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within %s; stderr:\n%s", p.Name, s, timeout, p.Stderr)
		}
	}
}

// Signal sends sig and returns the exit code, failing the test when the
// process does not exit within 30 seconds.
func (p *Proc) Signal(t testing.TB, sig syscall.Signal) int {
	t.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", p.Name, err)
	}
	select {
	case <-p.Done:
		return p.Cmd.ProcessState.ExitCode()
	case <-time.After(30 * time.Second):
		t.Fatalf("%s still running 30s after %v", p.Name, sig)
		return -1
	}
}

// Result is what a short command left behind.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs bin with args in dir to completion (60 s at most) with stdin as
// its standard input.
func Run(t testing.TB, bin, dir string, env []string, stdin string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("%s %s: %v", filepath.Base(bin), strings.Join(args, " "), err)
	}
	return Result{Stdout: stdout.String(), Stderr: stderr.String(), Code: cmd.ProcessState.ExitCode()}
}

// Eventually calls f until it returns nil, for at most timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
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
