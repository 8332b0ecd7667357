//go:build partition

package e2e

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
)

// ptT is the partition test's *testing.T, whose Errorf also keeps each
// failure (its first 25 lines), to be repeated at the end of the run
// (failures): CI shows a failed run's last lines, after its figures.
type ptT struct {
	*testing.T
	why *[]string
}

func newPtT(t *testing.T) ptT { return ptT{T: t, why: new([]string)} }

// Errorf fails the test, as testing.T's does, and keeps the message.
func (t ptT) Errorf(format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	t.T.Error(msg)
	if lines := strings.Split(msg, "\n"); len(lines) > 25 {
		msg = strings.Join(append(lines[:24], fmt.Sprintf("... and %d more lines, in the failure above", len(lines)-24)), "\n")
	}
	*t.why = append(*t.why, msg)
}

// failures repeats why the run failed.
func (t ptT) failures() {
	t.Helper()
	if len(*t.why) > 0 {
		t.Logf("FAILED because:\n%s", strings.Join(*t.why, "\n"))
	}
}

// waitForJobs waits until every acknowledged job ran or is a dead letter,
// for at most jobsWait after the clients stop, and returns the runs then.
// Jobs still missing fail the test with their dispatch records. Jobs still
// missing lateAfter after the clients stopped are named at the end, with
// what their lookups and the workers' log say, in a passing run too: a job
// handed to a worker whose link was cut runs only after AckWait (30 s),
// and again after another one when its redelivery meets a dead pull.
func waitForJobs(t ptT, admin jetstream.JetStream, in *bus.Inspector, ops []ptOp, runs func() []ptRun, workerLog string) []ptRun {
	t.Helper()
	const jobsWait, lateAfter = 150 * time.Second, 30 * time.Second
	began := time.Now()
	var late map[string]bool
	defer func() {
		if len(late) > 0 {
			t.Logf("jobs that ran more than %s after the clients stopped (%d):\n%s", lateAfter, len(late), whereAre(admin, in, late, workerLog))
		}
	}()
	ran := waitForJobsUntil(t, admin, in, ops, runs, workerLog, began.Add(jobsWait), func(missing map[string]bool) {
		if late == nil && time.Since(began) > lateAfter {
			late = maps.Clone(missing)
		}
	})
	return ran
}

// waitForJobsUntil is waitForJobs's loop, until deadline; it calls seen
// with the jobs still missing on each round.
func waitForJobsUntil(t ptT, admin jetstream.JetStream, in *bus.Inspector, ops []ptOp, runs func() []ptRun, workerLog string,
	deadline time.Time, seen func(missing map[string]bool)) []ptRun {
	t.Helper()
	wait := time.Until(deadline)
	acked := map[string]ptOp{}
	for _, o := range ops {
		if o.Kind == opDispatch && o.OK {
			acked[o.Key] = o
		}
	}
	dead := map[string]bool{}
	for {
		ran := runs()
		missing := map[string]bool{}
		for id := range acked {
			missing[id] = !dead[id]
		}
		for _, r := range ran {
			delete(missing, r.id)
		}
		for id, m := range missing {
			if !m {
				delete(missing, id)
			}
		}
		if len(missing) == 0 {
			t.Logf("jobs: %d acknowledged ran or are dead letters (%d dead letters) %.1fs after the clients stopped",
				len(acked), len(dead), (wait - time.Until(deadline)).Seconds())
			return ran
		}
		seen(missing)
		if len(missing) < 200 { // a few: look for them in DLQ, one direct get each
			for id := range missing {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				if _, err := in.FailedJob(ctx, id); err == nil {
					dead[id] = true
				}
				cancel()
			}
		}
		if time.Now().After(deadline) {
			var lost []string
			for id := range missing {
				if !dead[id] {
					lost = append(lost, acked[id].String())
				}
			}
			slices.Sort(lost)
			if len(lost) > 0 {
				t.Errorf("jobs: %d of %d acknowledged jobs neither ran nor are dead letters %s after heal (LOST):\n%s%s",
					len(lost), len(acked), wait.Round(time.Second), whereAre(admin, in, missing, workerLog), strings.Join(lost, "\n"))
				return ran
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// whereAre says what the job's status lookup answers for at most ten of
// the missing jobs, and the worker log's lines about each: why it did not
// run, for a run that failed on a machine where only its output is kept.
func whereAre(admin jetstream.JetStream, in *bus.Inspector, missing map[string]bool, workerLog string) string {
	logged, _ := os.ReadFile(workerLog)
	var b strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if c, err := admin.Consumer(ctx, bus.JobsStream, "q-default"); err != nil {
		fmt.Fprintf(&b, "consumer q-default: %v\n", err)
	} else {
		ci := c.CachedInfo()
		leader := ""
		if ci.Cluster != nil {
			leader = ci.Cluster.Leader
		}
		fmt.Fprintf(&b, "consumer q-default: leader %q, %d pending, %d ack pending, %d redelivered, %d pulls waiting, delivered up to %d, acked up to %d\n",
			leader, ci.NumPending, ci.NumAckPending, ci.NumRedelivered, ci.NumWaiting, ci.Delivered.Stream, ci.AckFloor.Stream)
	}
	cancel()
	n := 0
	for id, m := range missing {
		if !m {
			continue
		}
		if n++; n > 10 {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		st, err := in.Job(ctx, id)
		cancel()
		if err != nil {
			fmt.Fprintf(&b, "%s: status lookup: %v\n", id, err)
		} else {
			fmt.Fprintf(&b, "%s: %s seq %d attempt %d worker %q at %s: %s\n", id, st.State, st.Seq, st.Attempt, st.Worker, st.At.Format(time.TimeOnly), st.Note)
		}
		lines := 0
		for line := range strings.Lines(string(logged)) {
			if strings.Contains(line, id) && lines < 8 {
				lines++
				b.WriteString("  " + line)
			}
		}
	}
	return b.String()
}

// checkJobs states the job figures and fails on a job run that nobody
// dispatched. A job that ran more than once is allowed (delivery is at
// least once: a worker on the minority side ran it and could not ack it)
// and counted.
func checkJobs(t ptT, ops []ptOp, ran []ptRun) {
	t.Helper()
	dispatched := map[string]ptOp{}
	acked, failed := 0, 0
	for _, o := range ops {
		if o.Kind != opDispatch {
			continue
		}
		dispatched[o.Key] = o
		if o.OK {
			acked++
		} else {
			failed++
		}
	}
	count := map[string]int{}
	nodes := map[string]map[int]bool{}
	for _, r := range ran {
		count[r.id]++
		if nodes[r.id] == nil {
			nodes[r.id] = map[int]bool{}
		}
		nodes[r.id][r.node] = true
	}
	dups, extra, bothSides, failedButRan := 0, 0, 0, 0
	for id, n := range count {
		o, ok := dispatched[id]
		if !ok {
			t.Errorf("jobs: %q ran %d times but was never dispatched", id, n)
			continue
		}
		if !o.OK {
			failedButRan++
		}
		if n > 1 {
			dups++
			extra += n - 1
			if len(nodes[id]) > 1 {
				bothSides++
			}
		}
	}
	t.Logf("jobs: %d dispatches acknowledged, %d failed (%d of those were stored anyway and ran); %d distinct jobs ran, %d runs",
		acked, failed, failedButRan, len(count), len(ran))
	t.Logf("jobs: %d ran more than once (%d extra runs; %d of them on workers of different nodes): at-least-once delivery",
		dups, extra, bothSides)
}

// checkSessions checks every client's session guarantees (read-your-writes,
// monotonic reads, no value nobody wrote) and fails with the history on any
// violation; it checks every session key with porcupine and counts stale
// reads across tabs, and prints those as figures (see the comment at the
// porcupine result).
func checkSessions(t ptT, ops []ptOp, browsers, isolated int, from, until time.Duration) {
	t.Helper()
	var writesOK, writesFailed, readsOK, readsFailed, dispatches, runs int
	for _, o := range ops {
		switch {
		case o.Kind == opDispatch:
			dispatches++
		case o.Kind == opRun:
			runs++
		case o.Kind == opWrite && o.OK:
			writesOK++
		case o.Kind == opWrite:
			writesFailed++
		case o.Kind == opRead && o.OK:
			readsOK++
		case o.Kind == opRead:
			readsFailed++
		}
	}
	t.Logf("operations recorded: %d (%d dispatches, %d job runs; %d session writes acknowledged, %d failed; %d reads answered, %d failed)",
		len(ops), dispatches, runs, writesOK, writesFailed, readsOK, readsFailed)

	violations := 0
	for b := range browsers {
		key := fmt.Sprintf("s%d", b)
		res, vis, n := linearizability(ops, key, 2*time.Minute)
		switch res {
		case porcupine.Ok:
			t.Logf("sessions: %s: %d operations linearizable (porcupine)", key, n)
		case porcupine.Unknown:
			t.Logf("sessions: %s: porcupine gave up after 2m on %d operations: NOT CHECKED", key, n)
		default:
			// Tabs of one browser share its revision cookie, and a late
			// response can lower it, so a tab may read an older value than
			// another tab on another node already saw (docs/partitions.md):
			// measured, not promised. JETFLEET_PARTITION_STRICT=1 makes
			// it fail, for work on that guarantee.
			report := t.Logf
			if os.Getenv("JETFLEET_PARTITION_STRICT") == "1" {
				violations++
				report = t.Errorf
			}
			report("sessions: %s: %d operations NOT linearizable across tabs (porcupine); visualization: %s; whole history: %s\n%s",
				key, n, vis, writeHistory(ops, key), staleWindow(ops, key))
		}
	}
	bad := clientGuarantees(ops)
	for _, v := range bad {
		violations++
		t.Errorf("sessions: %s violated by client c%d: %s\n%s", v.rule, v.op.Client, v.why, v.op)
	}
	if len(bad) > 0 {
		for b := range browsers {
			key := fmt.Sprintf("s%d", b)
			t.Errorf("history of session %s: %s", key, writeHistory(ops, key))
		}
	}
	stale := staleReads(ops)
	t.Logf("sessions: %d stale reads (a newer write acknowledged before the read began)", len(stale))
	for i, o := range stale {
		if i == 10 {
			t.Logf("  ... and %d more", len(stale)-i)
			break
		}
		t.Logf("  stale: %s", o)
	}
	var answered []ptOp
	for _, o := range ops {
		if o.Node == isolated && o.Kind == opRead && o.OK && o.Call >= from && o.Call < until {
			answered = append(answered, o)
		}
	}
	if len(answered) == 0 {
		t.Logf("sessions: the isolated former leader n%d answered no read while isolated", isolated+1)
	} else {
		last := answered[len(answered)-1]
		staleThere := 0
		for _, o := range stale {
			if o.Node == isolated && o.Call >= from && o.Call < until {
				staleThere++
			}
		}
		t.Logf("sessions: the isolated former leader n%d answered %d reads while isolated (%d of them stale), the last one invoked %.1fs after the cut",
			isolated+1, len(answered), staleThere, (last.Call - from).Seconds())
	}
	for _, o := range ops {
		if o.Node != isolated && o.Kind == opWrite && o.OK && o.Call >= from && o.Call < until {
			t.Logf("sessions: the majority side acknowledged its first write %.1fs after the cut", (o.Return - from).Seconds())
			break
		}
	}
	t.Logf("violations: %d", violations)
}

// writeHistory writes every operation on key to a temporary file and
// returns its path.
func writeHistory(ops []ptOp, key string) string {
	f, err := os.CreateTemp("", "jetfleet-partition-"+key+"-*.txt")
	if err != nil {
		return "(not written: " + err.Error() + ")"
	}
	defer f.Close()
	f.WriteString(formatHistory(ops, func(o ptOp) bool { return o.Key == key }))
	path, _ := filepath.Abs(f.Name())
	return path
}

// staleWindow is the history of key from 2 s before its first stale read
// to 2 s after it: where the violation is.
func staleWindow(ops []ptOp, key string) string {
	for _, st := range staleReads(ops) {
		if st.Key == key {
			return fmt.Sprintf("first stale read: %s\nhistory of %s around it:\n%s", st, key, formatHistory(ops, func(o ptOp) bool {
				return o.Key == key && o.Return >= st.Call-2*time.Second && o.Call <= st.Return+2*time.Second
			}))
		}
	}
	return "(no read of " + key + " was stale by real time: see the visualization)"
}
