package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/node"
)

// exitAlert is the exit status of `queue monitor` when a queue is in ALERT
// (1 is an error, 2 a usage error).
const exitAlert = 3

func runQueueStats(ctx context.Context, a *app, name string, args []string) error {
	fs := queueFlagSet(a, name)
	watch := fs.Bool("watch", false, "redraw every --interval until interrupted")
	interval := fs.Duration("interval", 2*time.Second, "refresh interval of --watch")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.parseNoArgs(args); err != nil {
		return err
	}
	if *interval == 0 { // a negative one is refused by parseNoArgs
		return node.UsageError(fs.FlagSet, "--interval %s: must be positive", *interval)
	}
	in, done, err := inspector(ctx, a, fs)
	if err != nil {
		return err
	}
	defer done()
	for {
		st, err := in.Stats(ctx)
		if err != nil {
			return err
		}
		if *watch && !*asJSON {
			fmt.Fprint(a.stdout, "\033[H\033[2J") // clear the screen
		}
		if *asJSON {
			err = writeJSON(a.stdout, st)
		} else {
			printStats(a.stdout, st)
		}
		if err != nil || !*watch {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
	}
}

func printStats(w io.Writer, st *bus.Stats) {
	if len(st.Queues) == 0 {
		fmt.Fprintln(w, "No queues yet: a queue appears when a worker or `jetfleet up` first serves it.")
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "QUEUE\tREADY\tACTIVE\tDELAYED\tFAILED\tOLDEST\tDONE/1M\tFAIL/1M\tWORKERS")
		var paused []string
		for _, q := range st.Queues {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%d\t%d\t%d\n", q.Queue, q.Ready, q.InFlight, q.Delayed, q.Failed,
				age(q.OldestReady), q.ProcessedLastMinute, q.FailedLastMinute, q.Workers)
			if q.Paused {
				paused = append(paused, q.Queue)
			}
		}
		tw.Flush()
		if len(paused) > 0 {
			fmt.Fprintf(w, "Paused: %s (jetfleet queue resume <queue>)\n", strings.Join(paused, ", "))
		}
		printWaiting(w, st)
	}
	fmt.Fprintf(w, "\nFailed jobs in DLQ: %d.  Workers: %d.\n", st.FailedTotal, len(st.Workers))
	if len(st.Workers) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nWORKER\tPID\tQUEUES\tRUNNING\tUP\tSEEN")
	for _, wr := range st.Workers {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d/%d\t%s\t%s ago\n", clip(wr.Host, 24), wr.PID, clip(strings.Join(wr.Queues, ","), 20),
			wr.Running, wr.Concurrency, age(st.At.Sub(wr.StartedAt)), age(st.At.Sub(wr.HeartbeatAt)))
	}
	tw.Flush()
}

// age is a short duration for a table: 45s, 12m, 3h, 2d; "-" for zero.
func age(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

func runQueueMonitor(ctx context.Context, a *app, name string, args []string) error {
	fs := queueFlagSet(a, name)
	defMax := fs.Uint64("max", 1000, "limit for queues listed without :N")
	maxWait := fs.Duration("max-wait", 0, "also ALERT when the oldest ready job has waited longer than this (0: off)")
	every := fs.Duration("every", 0, "keep checking at this interval instead of exiting; a check that fails after the first is reported and the next one made (exit status 0 when stopped)")
	asJSON := fs.Bool("json", false, "print each check as one line of JSON: {\"at\":…,\"queues\":[{\"queue\",\"ready\",\"max\",\"oldest_ready\",\"max_wait\",\"status\"}]}")
	pos, err := fs.parseArgs(args, 1, 1, "one queue list like high:100,default:1000")
	if err != nil {
		return err
	}
	limits, err := bus.ParseQueueLimits(pos[0], *defMax, *maxWait)
	if err != nil { // the list is the command's argument: a usage error, named
		return node.UsageError(fs.FlagSet, "%s", invalidText(err))
	}
	nc, js, err := connectBus(ctx, a, *fs.data, "jetfleet queue monitor")
	if err != nil {
		return err
	}
	defer nc.Close()
	in, err := bus.NewInspector(js, bus.Config{})
	if err != nil {
		return err
	}
	check := func() (alerts int, err error) {
		sts, err := in.Monitor(ctx, limits)
		if err != nil {
			return 0, err
		}
		switch {
		case *asJSON:
			if err := json.NewEncoder(a.stdout).Encode(monitorJSON(sts, time.Now())); err != nil {
				return 0, err
			}
		case *every > 0:
			fmt.Fprintln(a.stdout, time.Now().Format(time.DateTime))
			printMonitor(a.stdout, sts)
		default:
			printMonitor(a.stdout, sts)
		}
		return bus.PublishBusy(ctx, nc, sts)
	}
	alerts, err := check()
	if err != nil && (*every <= 0 || ctx.Err() == nil) {
		return err // the first check fails as a single one does: a typo'd queue, no NATS
	}
	if *every <= 0 {
		if alerts > 0 {
			fmt.Fprintf(a.stderr, "jetfleet queue monitor: %d %s in ALERT; published on %s\n", alerts, plural(alerts, "queue", "queues"), bus.QueueBusySubject)
			return node.ExitCode(exitAlert)
		}
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil // a signal: how --every is meant to stop
		case <-time.After(*every):
		}
		if _, err := check(); err != nil && ctx.Err() == nil {
			// A NATS outage or an election: say so and check again.
			fmt.Fprintf(a.stderr, "jetfleet queue monitor: %s: check failed, checking again in %s: %v\n", time.Now().Format(time.DateTime), *every, err)
		}
	}
}

// monitorCheck is one check of `queue monitor --json`: durations in
// seconds, as in the events it publishes (bus.QueueBusyEvent).
type monitorCheck struct {
	At     time.Time      `json:"at"`
	Queues []monitorQueue `json:"queues"`
}

type monitorQueue struct {
	Queue       string  `json:"queue"`
	Ready       uint64  `json:"ready"`
	Max         uint64  `json:"max"`
	OldestReady float64 `json:"oldest_ready"`
	MaxWait     float64 `json:"max_wait"`
	Status      string  `json:"status"`
}

func monitorJSON(sts []bus.MonitorRow, at time.Time) monitorCheck {
	out := monitorCheck{At: at.UTC(), Queues: []monitorQueue{}}
	for _, st := range sts {
		out.Queues = append(out.Queues, monitorQueue{
			Queue: st.Queue, Ready: st.Ready, Max: st.Max, OldestReady: st.OldestReady.Seconds(),
			MaxWait: st.MaxWait.Seconds(), Status: monitorStatus(st),
		})
	}
	return out
}

func monitorStatus(st bus.MonitorRow) string {
	if st.Alert {
		return "ALERT"
	}
	return "OK"
}

func printMonitor(w io.Writer, sts []bus.MonitorRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tREADY\tMAX\tOLDEST\tSTATUS")
	for _, st := range sts {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", st.Queue, st.Ready, st.Max, age(st.OldestReady), monitorStatus(st))
	}
	tw.Flush()
}

func runQueuePause(ctx context.Context, a *app, name string, args []string) error {
	return pauseOrResume(ctx, a, name, args, true)
}

func runQueueResume(ctx context.Context, a *app, name string, args []string) error {
	return pauseOrResume(ctx, a, name, args, false)
}

func pauseOrResume(ctx context.Context, a *app, name string, args []string, pause bool) error {
	fs := queueFlagSet(a, name)
	pos, err := fs.parseArgs(args, 1, 1, "one queue name")
	if err != nil {
		return err
	}
	q := pos[0]
	if err := checkName(fs.FlagSet, "queue", q); err != nil {
		return err
	}
	in, done, err := inspector(ctx, a, fs)
	if err != nil {
		return err
	}
	defer done()
	if pause {
		if err := in.Pause(ctx, q); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "Queue %s paused: workers take no new job from it (running jobs finish).\n", q)
		return nil
	}
	if err := in.Resume(ctx, q); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "Queue %s resumed.\n", q)
	return nil
}

// printWaiting lists, per queue and kind, the jobs the workers hold for a
// fleet-wide limit (a concurrency slot or a rate token); nothing when none
// waits.
func printWaiting(w io.Writer, st *bus.Stats) {
	var rows [][3]string
	for _, q := range st.Queues {
		for _, kind := range slices.Sorted(maps.Keys(q.WaitingKinds)) {
			rows = append(rows, [3]string{q.Queue, kind, strconv.FormatUint(q.WaitingKinds[kind], 10)})
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w, "\nWaiting for a concurrency slot or rate token (held by workers, no try used):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tKIND\tWAITING")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r[0], clip(r[1], 40), r[2])
	}
	tw.Flush()
}
