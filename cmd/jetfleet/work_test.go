package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/workers"
)

// fleet is a NATS server in the test process and worker processes of the
// real binary attached to it.
type fleet struct {
	t   *testing.T
	js  jetstream.JetStream
	d   *bus.Dispatcher
	env []string
	dir string
	all []*proc
}

func newFleet(t *testing.T) *fleet {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	if err := bus.Provision(context.Background(), js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return &fleet{t: t, js: js, d: d, env: testEnv("NATS_URL=" + srv.ClientURL()), dir: t.TempDir()}
}

func (f *fleet) startWorker(extraEnv []string, args ...string) *proc {
	p := startProc(f.t, f.dir, append(append([]string(nil), f.env...), extraEnv...), append([]string{"work"}, args...)...)
	p.WaitFor(f.t, "worker started", 20*time.Second)
	f.all = append(f.all, p)
	return p
}

// succeeded lists the job IDs that the processes logged as succeeded.
func (f *fleet) succeeded() map[string]int {
	ids := map[string]int{}
	for _, p := range f.all {
		sc := bufio.NewScanner(strings.NewReader(p.Stderr.String()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var line struct {
				Message string `json:"message"`
				JobID   string `json:"job_id"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Message == "job succeeded" {
				ids[line.JobID]++
			}
		}
	}
	return ids
}

func (f *fleet) deadLettered() map[string]string {
	ctx := context.Background()
	s, err := f.js.Stream(ctx, bus.DLQStream)
	if err != nil {
		f.t.Fatal(err)
	}
	info, _ := s.Info(ctx)
	out := map[string]string{}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			f.t.Fatal(err)
		}
		out[m.Header.Get(bus.HeaderJobID)] = m.Header.Get(bus.HeaderError) // one line: \n escaped (the checks look for text on its first line)
	}
	return out
}

func (f *fleet) jobsLeft() uint64 {
	s, err := f.js.Stream(context.Background(), bus.JobsStream)
	if err != nil {
		f.t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	return info.State.Msgs
}

func TestFleetLosesNothingWhenWorkersAreKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test takes about a minute")
	}
	f := newFleet(t)
	jobs := make([]bus.DispatchManyParams, 5000)
	for i := range jobs {
		jobs[i] = bus.DispatchManyParams{Args: workers.Sleep{MS: 60 + rand.IntN(80)}}
	}
	ids, err := f.d.DispatchMany(context.Background(), jobs...)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--concurrency", "16", "--tries", "5", "--ack-wait", "2s", "--backoff", "100ms"}
	var live []*proc
	for range 3 {
		live = append(live, f.startWorker(nil, args...))
	}
	kills := 0
	deadline := time.Now().Add(3 * time.Minute)
	for f.jobsLeft() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Second)
		if f.jobsLeft() == 0 || kills >= 20 {
			continue
		}
		i := rand.IntN(len(live))
		if err := live[i].Cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-live[i].Done
		kills++
		live[i] = f.startWorker(nil, args...)
	}
	if left := f.jobsLeft(); left != 0 {
		t.Fatalf("JOBS still holds %d messages after 3 minutes", left)
	}
	ran, dead := f.succeeded(), f.deadLettered()
	missing, twice := 0, 0
	for _, id := range ids {
		if ran[id] == 0 && dead[id] == "" {
			missing++
		}
		if ran[id] > 1 {
			twice++
		}
	}
	t.Logf("5000 jobs, %d kill -9s: %d ran, %d ran more than once (at-least-once), %d in DLQ, %d missing",
		kills, len(ran), twice, len(dead), missing)
	if missing != 0 {
		t.Fatalf("%d accepted jobs neither ran nor reached DLQ", missing)
	}
	if kills < 5 {
		t.Fatalf("only %d workers were killed; the test did not exercise crashes", kills)
	}
	for id, reason := range dead {
		if !strings.Contains(reason, "interrupted during its last attempt") {
			t.Errorf("job %s dead-lettered for %q", id, reason)
		}
	}
}

func TestKillDuringLastAttemptReachesDLQOnce(t *testing.T) {
	f := newFleet(t)
	args := []string{"--ack-wait", "2s"}
	a := f.startWorker([]string{"LOG_LEVEL=debug"}, args...)
	id, err := f.d.Dispatch(context.Background(), workers.Sleep{MS: 60_000}, bus.Tries(1))
	if err != nil {
		t.Fatal(err)
	}
	a.WaitFor(t, `"message":"job started"`, 10*time.Second)
	killed := time.Now()
	if err := a.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.Done
	// Two processes racing for the stranded job must still store one letter.
	f.startWorker(nil, args...)
	f.startWorker(nil, args...)
	bound := 2*time.Second + 30*time.Second
	eventually(t, bound, "the job in DLQ", func() error {
		if n := len(f.deadLettered()); n != 1 {
			return fmt.Errorf("%d dead letters", n)
		}
		return nil
	})
	t.Logf("killed during its last attempt; in DLQ %s later (bound: AckWait 2s + 30s)", time.Since(killed).Round(time.Millisecond))
	// Once the original has left JOBS (Term after the dead letter was
	// stored), no worker holds a copy that could be dead-lettered again.
	eventually(t, 10*time.Second, "the original to leave JOBS", func() error {
		if left := f.jobsLeft(); left != 0 {
			return fmt.Errorf("JOBS still holds %d messages", left)
		}
		return nil
	})
	dead := f.deadLettered()
	if len(dead) != 1 || !strings.Contains(dead[id], "interrupted during its last attempt") {
		t.Fatalf("dead letters = %v, want exactly job %s, interrupted", dead, id)
	}
	if n := len(f.succeeded()); n != 0 {
		t.Fatalf("the interrupted job ran again %d times", n)
	}
}

func TestWorkDrainsOnSIGTERM(t *testing.T) {
	f := newFleet(t)
	var jobs []bus.DispatchManyParams
	for range 6 {
		jobs = append(jobs, bus.DispatchManyParams{Args: workers.Sleep{MS: 1500}})
	}
	if _, err := f.d.DispatchMany(context.Background(), jobs...); err != nil {
		t.Fatal(err)
	}
	// A long AckWait: jobs left to it would take a minute to come back.
	args := []string{"--concurrency", "2", "--ack-wait", "60s"}
	a := f.startWorker([]string{"LOG_LEVEL=debug"}, args...)
	eventually(t, 10*time.Second, "two jobs running", func() error {
		if n := strings.Count(a.Stderr.String(), `"message":"job started"`); n != 2 {
			return fmt.Errorf("%d started", n)
		}
		return nil
	})
	if code := a.Signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("worker exited %d after SIGTERM, want 0", code)
	}
	if n := len(f.succeeded()); n != 2 {
		t.Fatalf("%d in-flight jobs completed during the drain, want 2", n)
	}
	if left := f.jobsLeft(); left != 4 {
		t.Fatalf("JOBS holds %d after the drain, want the 4 unstarted", left)
	}
	took := time.Now()
	f.startWorker(nil, args...)
	eventually(t, 20*time.Second, "another worker to take the rest", func() error {
		if left := f.jobsLeft(); left != 0 {
			return fmt.Errorf("%d left", left)
		}
		return nil
	})
	t.Logf("the 4 unstarted jobs were done by another worker %s after it started (AckWait is 60s)", time.Since(took).Round(time.Millisecond))
	if n := len(f.succeeded()); n != 6 {
		t.Fatalf("%d jobs succeeded in all, want 6", n)
	}
}

func TestIdleWorkerUsesAlmostNoCPU(t *testing.T) {
	f := newFleet(t)
	p := f.startWorker(nil, "--queue", "high,default,emails")
	time.Sleep(time.Second)
	before := cpuTime(t, p.Cmd.Process.Pid)
	time.Sleep(5 * time.Second)
	used := cpuTime(t, p.Cmd.Process.Pid) - before
	share := used.Seconds() / 5
	t.Logf("idle worker used %s of CPU in 5s (%.2f%% of a core)", used, share*100)
	if share >= 0.02 {
		t.Fatalf("idle worker used %.2f%% of a core, want under 2%%", share*100)
	}
}

// cpuTime is a process's user plus system CPU time from /proc.
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	// Fields after the parenthesised command name; utime and stime are the
	// 14th and 15th fields of the line, in clock ticks (100 per second).
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.Atoi(fields[11])
	stime, _ := strconv.Atoi(fields[12])
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// With LOG_FLUSH_INTERVAL set, a worker writes its lines in batches: every
// job's line still appears (within the interval), and the line it writes
// as it stops is written before the process exits.
func TestWorkWithAFlushIntervalWritesEveryLine(t *testing.T) {
	f := newFleet(t)
	const n = 300
	jobs := make([]bus.DispatchManyParams, n)
	for i := range jobs {
		jobs[i] = bus.DispatchManyParams{Args: workers.Noop{}}
	}
	if _, err := f.d.DispatchMany(context.Background(), jobs...); err != nil {
		t.Fatal(err)
	}
	a := f.startWorker([]string{"LOG_FLUSH_INTERVAL=50ms"})
	eventually(t, 30*time.Second, "a line for every job", func() error {
		if got := len(f.succeeded()); got != n {
			return fmt.Errorf("%d of %d lines", got, n)
		}
		return nil
	})
	if code := a.Signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("worker exited %d after SIGTERM, want 0", code)
	}
	out := a.Stderr.String()
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, `"message":"worker stopped"`) && strings.Contains(line, fmt.Sprintf(`"jobs":%d,`, n)) {
			return
		}
	}
	t.Fatalf("no \"worker stopped\" line with jobs %d, the line written just before the exit; the log ends:\n%s", n, out[max(0, len(out)-1500):])
}
