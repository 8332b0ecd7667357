package jobs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a worker process. Its output goes to a file (as a service's
// log would), which also tells when it is ready: a line holding ready.
type proc struct {
	cmd   *exec.Cmd
	log   string
	ready string
	done  chan struct{}
}

func startProc(env []string, ready string, name string, args ...string) (*proc, error) {
	f, err := os.CreateTemp("", "jfbench-worker-*.log")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, log: f.Name(), ready: ready, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// waitReady waits until every process has logged its ready line.
func waitReady(ctx context.Context, ps []*proc) error {
	for _, p := range ps {
		for {
			b, _ := os.ReadFile(p.log)
			if bytes.Contains(b, []byte(p.ready)) {
				break
			}
			select {
			case <-p.done:
				return fmt.Errorf("worker %s exited before it was ready: %s", p.cmd.Path, tail(b))
			case <-ctx.Done():
				return fmt.Errorf("worker %s not ready: %w: %s", p.cmd.Path, ctx.Err(), tail(b))
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	return nil
}

func tail(b []byte) string {
	if len(b) > 600 {
		b = b[len(b)-600:]
	}
	return string(b)
}

// stopAll sends SIGTERM, waits for a clean exit (10 s), then kills.
func stopAll(ps []*proc) {
	for _, p := range ps {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range ps {
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		_ = os.Remove(p.log)
	}
}

// status reads a field of /proc/<pid>/status in bytes (kB there).
func (p *proc) status(field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// cpu is the process's user+system CPU time so far.
func (p *proc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

func maxRSS(ps []*proc) int64 { return maxStatus(ps, "VmRSS") }

func maxHWM(ps []*proc) int64 { return maxStatus(ps, "VmHWM") }

// maxStatus is the largest value of field of /proc/<pid>/status among ps.
func maxStatus(ps []*proc, field string) int64 {
	var m int64
	for _, p := range ps {
		m = max(m, p.status(field))
	}
	return m
}

func cpuOf(ps []*proc) time.Duration {
	var t time.Duration
	for _, p := range ps {
		t += p.cpu()
	}
	return t
}
