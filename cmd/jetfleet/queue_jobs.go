package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/node"
)

// runQueueJob is `jetfleet queue job <id>`: one job in any state.
func runQueueJob(ctx context.Context, a *app, name string, args []string) error {
	fs := queueFlagSet(a, name)
	asJSON := fs.Bool("json", false, "print the job as JSON (the history's record format)")
	ids, err := fs.parseArgs(args, 1, 1, "one job ID")
	if err != nil {
		return err
	}
	in, done, err := inspector(ctx, a, fs)
	if err != nil {
		return err
	}
	defer done()
	st, err := in.Job(ctx, ids[0])
	if err != nil {
		return err
	}
	if *asJSON {
		b, err := st.MarshalJSON()
		if err != nil {
			return err
		}
		return writeJSON(a.stdout, jsonRaw(b))
	}
	printJob(a.stdout, st, time.Now())
	return nil
}

// jsonRaw is JSON written as it is, indented by writeJSON.
type jsonRaw []byte

func (j jsonRaw) MarshalJSON() ([]byte, error) { return j, nil }

// stateLine says where the job is, in one line.
func stateLine(st *bus.JobStatus, now time.Time) string {
	switch st.State {
	case bus.JobDelayed:
		return fmt.Sprintf("delayed until %s (%s)", stamp(st.ReadyAt), inOrAgo(now, st.ReadyAt))
	case bus.JobReady:
		return "ready: waiting for a worker"
	case bus.JobRunning:
		return fmt.Sprintf("running on %s since %s (%s)%s", st.Worker, stamp(st.StartedAt), age(now.Sub(st.StartedAt)), attemptOf(st))
	case bus.JobRetrying:
		return fmt.Sprintf("retrying: attempt %d failed; the next one at %s (%s)", st.Attempt, stamp(st.NextAttemptAt), inOrAgo(now, st.NextAttemptAt))
	case bus.JobSucceeded:
		return fmt.Sprintf("succeeded at %s (%s ago) after %s%s", stamp(st.FinishedAt), age(now.Sub(st.FinishedAt)), runTime(st.RunTime), attemptOf(st))
	case bus.JobDead:
		return fmt.Sprintf("dead: failed for good at %s (%s ago); `jetfleet queue show %s` has its dead letter", stamp(st.At), age(now.Sub(st.At)), idArg(st.ID))
	case bus.JobCancelled:
		return fmt.Sprintf("cancelled at %s (%s ago)", stamp(st.At), age(now.Sub(st.At)))
	}
	return string(st.State)
}

// idArg is a job ID as a command pasted into a POSIX shell takes it:
// quoted by shellQuote, and after "--" when it starts with "-", so that it
// is not read as a flag.
func idArg(id string) string {
	arg := shellQuote(id)
	if strings.HasPrefix(id, "-") {
		return "-- " + arg
	}
	return arg
}

// shellQuote is s as one word of a POSIX shell: s itself when it holds
// only letters, digits and _-.,:/@%+=, else s in single quotes, where
// each single quote of s ends the quoting, is written as \' and starts
// the quoting again.
func shellQuote(s string) string {
	plain := s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("_-.,:/@%+=", r))
	}) < 0
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func attemptOf(st *bus.JobStatus) string {
	switch {
	case st.Attempt > 0 && st.Tries > 0:
		return fmt.Sprintf(", attempt %d of %d", st.Attempt, st.Tries)
	case st.Attempt > 0:
		return fmt.Sprintf(", attempt %d", st.Attempt)
	}
	return ""
}

func ofTries(tries int) string {
	if tries > 0 {
		return fmt.Sprintf(" of %d", tries)
	}
	return ""
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// inOrAgo is "in 5s" for a time to come, "5s ago" for one past.
func inOrAgo(now, t time.Time) string {
	if t.After(now) {
		return "in " + age(t.Sub(now))
	}
	return age(now.Sub(t)) + " ago"
}

func runTime(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

func printJob(w io.Writer, st *bus.JobStatus, now time.Time) {
	w = termSafe(w) // bodies, headers, errors: anyone who can publish wrote them
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(name, format string, args ...any) { fmt.Fprintf(tw, name+":\t"+format+"\n", args...) }
	row("ID", "%s", st.ID)
	row("State", "%s", stateLine(st, now))
	if st.Note != "" {
		row("Note", "%s", st.Note)
	}
	row("Queue", "%s", st.Queue)
	row("Kind", "%s", st.Kind)
	if len(st.Tags) > 0 {
		row("Tags", "%s", strings.Join(st.Tags, ", "))
	}
	if p := st.Progress; p != nil {
		row("Progress", "%.0f%% %s (%s ago)", p.Done*100, p.Message, age(now.Sub(p.At)))
	}
	if st.Attempt > 0 && st.State != bus.JobRunning && st.State != bus.JobSucceeded { // those say it in their state line
		row("Attempt", "%d%s", st.Attempt, ofTries(st.Tries))
	}
	for _, t := range []struct {
		name string
		at   time.Time
	}{{"Enqueued", st.EnqueuedAt}, {"Started", st.StartedAt}, {"Finished", st.FinishedAt}} {
		if !t.at.IsZero() {
			row(t.name, "%s (%s)", stamp(t.at), inOrAgo(now, t.at))
		}
	}
	if st.RunTime > 0 {
		row("Run time", "%s", runTime(st.RunTime))
	}
	if st.Worker != "" && st.State != bus.JobRunning {
		row("Worker", "%s", st.Worker)
	}
	if st.Seq > 0 {
		row("In JOBS", "sequence %d", st.Seq)
	}
	if dl := st.DeadLetter; dl != nil {
		row("Dead letter", "%s seq %d, subject %s", bus.DLQStream, dl.Seq, dl.Subject)
	}
	tw.Flush()
	if st.Error != "" {
		fmt.Fprintln(w, "\nError:")
		fmt.Fprintln(w, indent(st.Error))
	}
	if len(st.Result) > 0 {
		fmt.Fprintln(w, "\nResult:")
		fmt.Fprintln(w, indent(prettyJSON(st.Result)))
	}
	if len(st.Headers) > 0 {
		fmt.Fprintln(w, "\nHeaders:")
		keys := make([]string, 0, len(st.Headers))
		for k := range st.Headers {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %s: %s\n", k, st.Headers[k])
		}
	}
	switch {
	case len(st.Body) > 0:
		fmt.Fprintln(w, "\nBody:")
		fmt.Fprintln(w, indent(prettyJSON(st.Body)))
	case st.BodyBytes > 0:
		fmt.Fprintf(w, "\nBody: %d bytes, too large for the history (%d bytes at most)\n", st.BodyBytes, bus.MaxRecordBody)
	}
}

// maxJobsLimit is the most jobs `queue jobs` lists (bus.JobFilter's cap).
const maxJobsLimit = 1000

// listedStates are the states `queue jobs --state` takes, in the order its
// help and errors list them.
func listedStates() []bus.JobState {
	return []bus.JobState{bus.JobDelayed, bus.JobReady, bus.JobRunning, bus.JobRetrying, bus.JobSucceeded, bus.JobDead, bus.JobCancelled}
}

// runQueueJobs is `jetfleet queue jobs`: recent jobs, newest first.
func runQueueJobs(ctx context.Context, a *app, name string, args []string) error {
	fs := queueFlagSet(a, name)
	tag := fs.String("tag", "", "only jobs with this tag")
	queue := fs.String("queue", "", "only jobs of this queue")
	kind := fs.String("kind", "", "only jobs of this kind")
	state := fs.String("state", "", "only jobs in this state: "+stateNames())
	limit := fs.Int("limit", 50, fmt.Sprintf("show at most this many (0: all; capped at %d, with a note on stderr above it)", maxJobsLimit))
	asJSON := fs.Bool("json", false, "print a JSON array of the jobs (the history's record format)")
	if err := fs.parseNoArgs(args); err != nil {
		return err
	}
	filter, err := jobFilter(fs, *tag, *queue, *kind, *state)
	if err != nil {
		return err
	}
	filter.Limit = jobsLimit(a, fs, *limit)
	in, done, err := inspector(ctx, a, fs)
	if err != nil {
		return err
	}
	defer done()
	jobs, err := in.Jobs(ctx, filter)
	if err != nil {
		return err
	}
	if len(jobs) == 0 {
		noteUnknownQueue(ctx, a, in, *queue)
	}
	if *asJSON {
		raws := make([]jsonRaw, len(jobs))
		for i, st := range jobs {
			raws[i] = st.AppendJSON(nil)
		}
		return writeJSON(a.stdout, raws)
	}
	if len(jobs) == 0 {
		fmt.Fprintln(a.stdout, noJobsFound(*state))
		return nil
	}
	printJobs(a.stdout, jobs, time.Now())
	return nil
}

// jobFilter checks the filters of `queue jobs` before it connects: a bad
// one is a usage error naming its flag.
func jobFilter(fs *flagSetWithSynopsis, tag, queue, kind, state string) (bus.JobFilter, error) {
	if state != "" && !slices.Contains(listedStates(), bus.JobState(state)) {
		return bus.JobFilter{}, node.UsageError(fs.FlagSet, "--state %q: want one of %s", state, stateNames())
	}
	if err := checkQueueKind(fs, queue, kind); err != nil {
		return bus.JobFilter{}, err
	}
	if err := checkTag(fs, tag); err != nil {
		return bus.JobFilter{}, err
	}
	return bus.JobFilter{Tag: tag, Queue: queue, Kind: kind, State: bus.JobState(state)}, nil
}

// stateNames lists the states of --state: "delayed, ready, ... or cancelled".
func stateNames() string {
	states := listedStates()
	names := make([]string, len(states))
	for i, s := range states {
		names[i] = string(s)
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// jobsLimit is the Limit of --limit n: 0 is all (maxJobsLimit); over
// maxJobsLimit it is capped, and a note on stderr says so.
func jobsLimit(a *app, fs *flagSetWithSynopsis, n int) int {
	if n > maxJobsLimit {
		fmt.Fprintf(a.stderr, "%s: --limit %d is capped at %d: listing at most %d jobs\n", fs.Name(), n, maxJobsLimit, maxJobsLimit)
	}
	if n == 0 || n > maxJobsLimit {
		return maxJobsLimit
	}
	return n
}

func printJobs(w io.Writer, jobs []*bus.JobStatus, now time.Time) {
	w = termSafe(w) // bodies, headers, errors: anyone who can publish wrote them
	rows := [][]string{{"ID", "QUEUE", "KIND", "STATE", "WHEN", "ATTEMPT", "PROGRESS"}}
	for _, st := range jobs {
		when := inOrAgo(now, st.At)
		switch st.State {
		case bus.JobRunning:
			when = "since " + age(now.Sub(st.StartedAt))
		case bus.JobDelayed:
			when = inOrAgo(now, st.ReadyAt)
		case bus.JobRetrying:
			when = inOrAgo(now, st.NextAttemptAt)
		}
		attempt, progress := "", ""
		if st.Attempt > 0 {
			attempt = fmt.Sprint(st.Attempt)
		}
		if st.Progress != nil && !st.State.Finished() {
			progress = fmt.Sprintf("%.0f%%", st.Progress.Done*100)
		}
		rows = append(rows, []string{st.ID, st.Queue, st.Kind, string(st.State), when, attempt, progress})
	}
	writeTable(w, rows, nil)
}

// noJobsFound is what an empty listing says; without --state it also
// says where the waiting jobs are, which a listing of every state leaves
// out (ready and delayed jobs have no record yet).
func noJobsFound(state string) string {
	if state != "" {
		return "No jobs found."
	}
	return "No jobs found. (Waiting jobs are listed with --state ready and --state delayed; `jetfleet queue stats` counts them.)"
}

// runQueueCancel is `jetfleet queue cancel`: by ID, by queue or by tag.
func runQueueCancel(ctx context.Context, a *app, name string, args []string) error {
	fs := queueFlagSet(a, name)
	queue := fs.String("queue", "", "cancel every job of this queue stored so far (running, waiting, delayed)")
	tag := fs.String("tag", "", "cancel every unfinished job with this tag")
	batch := fs.String("batch", "", "cancel a batch or a chain: its pending jobs never run")
	ids, err := fs.parseArgs(args, 0, -1, "job IDs, or --queue, --tag or --batch")
	if err != nil {
		return err
	}
	bulk := 0
	for _, set := range []bool{*queue != "", *tag != "", *batch != "", len(ids) > 0} {
		if set {
			bulk++
		}
	}
	if bulk != 1 {
		return node.UsageError(fs.FlagSet, "give job IDs, or --queue, --tag or --batch (one of them)")
	}
	if err := checkQueueKind(fs, *queue, ""); err != nil {
		return err
	}
	if err := checkTag(fs, *tag); err != nil {
		return err
	}
	in, done, err := inspector(ctx, a, fs)
	if err != nil {
		return err
	}
	defer done()
	switch {
	case *batch != "":
		return cancelBatch(ctx, a, in, *batch)
	case *queue != "":
		n, err := in.CancelQueue(ctx, *queue)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "Cancelled %d %s of queue %s (running ones are stopped, waiting and delayed ones removed).\n", n, plural(n, "job", "jobs"), *queue)
		return nil
	case *tag != "":
		n, err := in.CancelTag(ctx, *tag)
		if n > 0 || err == nil {
			fmt.Fprintf(a.stdout, "Cancelled %d %s tagged %s.\n", n, plural(n, "job", "jobs"), *tag)
		}
		return err
	}
	var errs []error
	for _, id := range ids {
		st, err := in.Cancel(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(a.stdout, "Cancelled job %s (%s).\n", id, cancelledWhat(st))
	}
	return errors.Join(errs...)
}

func cancelledWhat(st *bus.JobStatus) string {
	switch st.State {
	case bus.JobRunning:
		if st.Worker != "" {
			return "it was running on " + st.Worker + ": its context is cancelled, and it is not retried"
		}
		return "it was running: its context is cancelled, and it is not retried"
	case bus.JobDelayed:
		return "it was delayed: removed, it will not run"
	case bus.JobRetrying:
		return "it was waiting for a retry: removed, it will not run again"
	}
	return "it was waiting for a worker: removed, it will not run"
}

// runQueueClear is `jetfleet queue clear <queue>`, Laravel's queue:clear.
func runQueueClear(ctx context.Context, a *app, name string, args []string) error {
	fs := queueFlagSet(a, name)
	force := fs.Bool("force", false, "do not ask")
	pos, err := fs.parseArgs(args, 1, 1, "one queue name")
	if err != nil {
		return err
	}
	queue := pos[0]
	if err := checkName(fs.FlagSet, "queue", queue); err != nil {
		return err
	}
	in, done, err := inspector(ctx, a, fs)
	if err != nil {
		return err
	}
	defer done()
	if !*force {
		st, err := in.Stats(ctx)
		if err != nil {
			return err
		}
		waiting, err := waitingOn(st, queue)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "Delete the %d %s waiting on queue %s (ready, or delivered and not finished)? Running jobs finish but are not retried; delayed jobs are kept. [y/N] ",
			waiting, plural(int(waiting), "job", "jobs"), queue)
		answer, _ := bufio.NewReader(a.stdin).ReadString('\n')
		if ans := strings.ToLower(strings.TrimSpace(answer)); ans != "y" && ans != "yes" {
			fmt.Fprintln(a.stdout, "Nothing deleted.")
			return nil
		}
	}
	n, err := in.Clear(ctx, queue)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "Deleted %d %s from queue %s.\n", n, plural(int(n), "job", "jobs"), queue)
	return nil
}

// waitingOn is how many jobs wait on queue (ready, or delivered and not
// finished), or, before `queue clear` asks, the error Clear would give for
// a queue that does not exist (it wraps bus.ErrUnknownQueue).
func waitingOn(st *bus.Stats, queue string) (uint64, error) {
	known := make([]string, 0, len(st.Queues))
	for _, q := range st.Queues {
		if q.Queue == queue {
			return q.Ready + q.InFlight, nil
		}
		known = append(known, q.Queue)
	}
	return 0, fmt.Errorf("%w %q (known queues: %s)", bus.ErrUnknownQueue, queue, strings.Join(known, ", "))
}
