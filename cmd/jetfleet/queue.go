package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/node"
)

// queueCommand is one `jetfleet queue` subcommand; each is also reachable
// under its Laravel name, `jetfleet queue:<name>`.
type queueCommand struct {
	name, synopsis, summary string
	run                     func(ctx context.Context, a *app, name string, args []string) error
}

func queueCommands() []queueCommand {
	return append([]queueCommand{
		{"failed", "[--queue q] [--kind k] [--since 24h] [--limit 50] [--json]", "list failed jobs, newest first", runQueueFailed},
		{"show", "<id> [--json]", "show one failed job whole: headers, body, full error", runQueueShow},
		{"retry", "<id>... | all [--queue q] [--kind k] [--since 24h]", "put failed jobs back on their queues", runQueueRetry},
		{"forget", "<id>...", "delete failed jobs", runQueueForget},
		{"flush", "[--hours N] [--queue q]", "delete all failed jobs, or those older than N hours", runQueueFlush},
		{"stats", "[--watch] [--interval 2s] [--json]", "per-queue counts and the workers attached", runQueueStats},
		{"monitor", "high:100,default:1000 [--max N] [--max-wait 60s] [--every 1m] [--json]", "alert on queues over their size or wait", runQueueMonitor},
		{"pause", "<queue>", "workers stop taking jobs from a queue, fleet-wide", runQueuePause},
		{"resume", "<queue>", "workers take jobs from a paused queue again", runQueueResume},
		{"continue", "<queue>", "the same as resume (Laravel 11's name)", runQueueResume},
		{"job", "<id> [--json]", "one job by ID in any state: delayed, ready, running, retrying, succeeded, dead, cancelled", runQueueJob},
		{"jobs", "[--tag t] [--queue q] [--kind k] [--state s] [--limit 50] [--json]", "recent jobs, newest first", runQueueJobs},
		{"cancel", "<id>... | --queue q | --tag t | --batch b", "cancel jobs: waiting ones never run, running ones are stopped", runQueueCancel},
		{"clear", "<queue> [--force]", "delete the jobs waiting on a queue (asks first)", runQueueClear},
	}, batchQueueCommands()...) // queue_batch.go
}

// queueAliases are the Laravel names of the subcommands (queue:failed...).
func queueAliases() []string {
	var out []string
	for _, c := range queueCommands() {
		out = append(out, "queue:"+c.name)
	}
	return out
}

// commandArgs is what a command gets from the command line args: the
// arguments after its name, and when it was called by an alias
// "<name>:<sub>" (Laravel's queue:failed for `queue failed`), <sub> first.
func commandArgs(name string, args []string) []string {
	if sub, ok := strings.CutPrefix(args[0], name+":"); ok {
		return append([]string{sub}, args[1:]...)
	}
	return args[1:]
}

// runQueue is `jetfleet queue <subcommand>`: failed jobs and queue
// monitoring on the JOBS and DLQ streams (the nats CLI sees the same data).
func runQueue(ctx context.Context, a *app, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		queueUsage(a.stdout)
		return nil
	}
	for _, c := range queueCommands() {
		if c.name == args[0] {
			return c.run(ctx, a, c.name, args[1:])
		}
	}
	fmt.Fprintf(a.stderr, "jetfleet queue: unknown subcommand %q\n\n", args[0])
	queueUsage(a.stderr)
	return node.ErrUsage
}

func queueUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: jetfleet queue <subcommand> [flags]   (also as jetfleet queue:<subcommand>)")
	fmt.Fprintln(w, "\nSubcommands:")
	for _, c := range queueCommands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
}

// queueFlagSet is newFlagSet for `queue <name>`, with --data.
func queueFlagSet(a *app, name string) *flagSetWithSynopsis {
	for _, c := range queueCommands() {
		if c.name == name {
			fs := newFlagSet(a, "queue "+name, "queue "+name+" "+c.synopsis)
			return &flagSetWithSynopsis{FlagSet: fs, data: dataFlag(fs, a)}
		}
	}
	panic("unknown queue subcommand " + name)
}

// inspector connects to NATS (as every command does: NATS_URL, else
// <data>/nats.url, --data's) and returns an Inspector and a closer.
func inspector(ctx context.Context, a *app, fs *flagSetWithSynopsis) (*bus.Inspector, func(), error) {
	nc, js, err := connectBus(ctx, a, *fs.data, "jetfleet queue")
	if err != nil {
		return nil, nil, err
	}
	cfg, err := bus.ConfigFromEnv(a.getenv) // the history's settings, for cancels and messages
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	in, err := bus.NewInspector(js, cfg)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return in, nc.Close, nil
}

func runQueueFailed(ctx context.Context, a *app, name string, args []string) error {
	fs := queueFlagSet(a, name)
	queue := fs.String("queue", "", "only jobs of this queue")
	kind := fs.String("kind", "", "only jobs of this kind")
	since := fs.Duration("since", 0, "only jobs that failed within this long, e.g. 24h (default: all)")
	limit := fs.Int("limit", 50, "show at most this many, newest first (0: all)")
	asJSON := fs.Bool("json", false, "print a JSON array instead of a table")
	if err := fs.parseNoArgs(args); err != nil {
		return err
	}
	if err := checkQueueKind(fs, *queue, *kind); err != nil {
		return err
	}
	filter := bus.FailedFilter{Queue: *queue, Kind: *kind, Limit: *limit}
	if *since > 0 {
		filter.Since = time.Now().Add(-*since)
	}
	in, done, err := inspector(ctx, a, fs)
	if err != nil {
		return err
	}
	defer done()
	jobs, err := in.FailedJobs(ctx, filter)
	if err != nil {
		return err
	}
	if len(jobs) == 0 {
		noteUnknownQueue(ctx, a, in, *queue)
	}
	if *asJSON {
		views := make([]failedView, 0, len(jobs))
		for _, fj := range jobs {
			views = append(views, viewOf(fj))
		}
		return writeJSON(a.stdout, views)
	}
	if len(jobs) == 0 {
		fmt.Fprintln(a.stdout, "No failed jobs.")
		return nil
	}
	printFailedTable(a.stdout, jobs)
	return nil
}

// termWidth is the width the tables are laid out for.
const termWidth = 80

// printFailedTable writes one row per job. The error's first line gets the
// room left on an 80-column line; when that is under 20 columns (long IDs
// or kinds), it goes on its own indented line below each row instead.
func printFailedTable(w io.Writer, jobs []*bus.FailedJob) {
	w = termSafe(w) // bodies, headers, errors: anyone who can publish wrote them
	rows := [][]string{{"ID", "QUEUE", "KIND", "ATTEMPTS", "FAILED AT"}}
	for _, fj := range jobs {
		rows = append(rows, []string{fj.ID, fj.Queue, fj.Kind, fmt.Sprint(fj.Attempts), fj.FailedAt.Local().Format("Jan 02 15:04")})
	}
	room := termWidth - 1
	for _, width := range columnWidths(rows) {
		room -= width + 2
	}
	below := make([]string, len(rows))
	for i, fj := range jobs {
		if room >= 20 {
			rows[i+1] = append(rows[i+1], clip(firstLine(fj.Error), room))
		} else {
			below[i+1] = "  " + clip(firstLine(fj.Error), termWidth-3)
		}
	}
	if room >= 20 {
		rows[0] = append(rows[0], "ERROR")
	}
	writeTable(w, rows, below)
}

// writeTable writes rows as left-aligned columns two spaces apart; below[i],
// when set, is printed on its own line after row i.
func writeTable(w io.Writer, rows [][]string, below []string) {
	widths := columnWidths(rows)
	for i, r := range rows {
		var b strings.Builder
		for col, cell := range r {
			b.WriteString(cell)
			if col < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[col]-utf8.RuneCountInString(cell)+2))
			}
		}
		fmt.Fprintln(w, b.String())
		if i < len(below) && below[i] != "" {
			fmt.Fprintln(w, below[i])
		}
	}
}

func columnWidths(rows [][]string) []int {
	var widths []int
	for _, r := range rows {
		for col, cell := range r {
			if col == len(widths) {
				widths = append(widths, 0)
			}
			widths[col] = max(widths[col], utf8.RuneCountInString(cell))
		}
	}
	return widths
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return strings.TrimSpace(line)
}

// clip cuts s to at most n runes, marking a cut with "…".
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:max(n-1, 0)]) + "…"
}

// failedView is a failed job as `--json` prints it.
type failedView struct {
	ID       string            `json:"id"`
	Queue    string            `json:"queue"`
	Kind     string            `json:"kind"`
	Attempts int               `json:"attempts"`
	FailedAt time.Time         `json:"failed_at"`
	Error    string            `json:"error"`
	Origin   string            `json:"origin,omitempty"`
	DLQSeq   uint64            `json:"dlq_seq"`
	Subject  string            `json:"subject"`
	Headers  map[string]string `json:"headers"`
	// Body is the job's JSON arguments, or a string when they are not JSON.
	Body json.RawMessage `json:"body"`
}

func viewOf(fj *bus.FailedJob) failedView {
	v := failedView{
		ID: fj.ID, Queue: fj.Queue, Kind: fj.Kind, Attempts: fj.Attempts, FailedAt: fj.FailedAt,
		Error: fj.Error, Origin: fj.Origin, DLQSeq: fj.Seq, Subject: fj.Subject, Headers: map[string]string{},
		Body: fj.Body,
	}
	for k := range fj.Header {
		v.Headers[k] = fj.Header.Get(k)
	}
	if !json.Valid(fj.Body) {
		v.Body, _ = json.Marshal(string(fj.Body))
	}
	return v
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func runQueueShow(ctx context.Context, a *app, name string, args []string) error {
	fs := queueFlagSet(a, name)
	asJSON := fs.Bool("json", false, "print JSON")
	ids, err := fs.parseArgs(args, 1, 1, "one job ID")
	if err != nil {
		return err
	}
	in, done, err := inspector(ctx, a, fs)
	if err != nil {
		return err
	}
	defer done()
	fj, err := in.FailedJob(ctx, ids[0])
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(a.stdout, viewOf(fj))
	}
	printFailedJob(a.stdout, fj)
	return nil
}

func printFailedJob(w io.Writer, fj *bus.FailedJob) {
	w = termSafe(w) // bodies, headers, errors: anyone who can publish wrote them
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "ID:\t%s\n", fj.ID)
	fmt.Fprintf(tw, "Queue:\t%s\n", fj.Queue)
	fmt.Fprintf(tw, "Kind:\t%s\n", fj.Kind)
	fmt.Fprintf(tw, "Attempts:\t%d\n", fj.Attempts)
	fmt.Fprintf(tw, "Failed at:\t%s (%s ago)\n", fj.FailedAt.UTC().Format(time.RFC3339), time.Since(fj.FailedAt).Round(time.Second))
	fmt.Fprintf(tw, "Origin:\t%s\n", fj.Origin)
	fmt.Fprintf(tw, "Stored at:\t%s seq %d, subject %s\n", bus.DLQStream, fj.Seq, fj.Subject)
	tw.Flush()
	fmt.Fprintln(w, "\nHeaders:")
	keys := make([]string, 0, len(fj.Header))
	for k := range fj.Header {
		if k != bus.HeaderError {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %s: %s\n", k, fj.Header.Get(k))
	}
	fmt.Fprintln(w, "\nBody:")
	fmt.Fprintln(w, indent(prettyJSON(fj.Body)))
	fmt.Fprintln(w, "\nError:")
	fmt.Fprintln(w, indent(fj.Error))
}

func prettyJSON(b []byte) string {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return string(b)
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return string(b)
	}
	return string(out)
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }

func runQueueRetry(ctx context.Context, a *app, name string, args []string) error {
	fs := queueFlagSet(a, name)
	queue := fs.String("queue", "", "with all: only jobs of this queue")
	kind := fs.String("kind", "", "with all: only jobs of this kind")
	since := fs.Duration("since", 0, "with all: only jobs that failed within this long")
	ids, err := fs.parseArgs(args, 1, -1, "job IDs, or all")
	if err != nil {
		return err
	}
	all := len(ids) == 1 && ids[0] == "all"
	if !all && (*queue != "" || *kind != "" || *since != 0) {
		return node.UsageError(fs.FlagSet, "--queue, --kind and --since go with `retry all`; to retry by ID, give only the IDs")
	}
	if err := checkQueueKind(fs, *queue, *kind); err != nil {
		return err
	}
	in, done, err := inspector(ctx, a, fs)
	if err != nil {
		return err
	}
	defer done()
	var n int
	if all {
		f := bus.FailedFilter{Queue: *queue, Kind: *kind}
		if *since > 0 {
			f.Since = time.Now().Add(-*since)
		}
		n, err = in.RetryAll(ctx, f)
		if err == nil && n == 0 {
			noteUnknownQueue(ctx, a, in, *queue)
		}
	} else {
		n, err = in.Retry(ctx, ids...)
	}
	fmt.Fprintf(a.stdout, "Retried %d failed %s.\n", n, plural(n, "job", "jobs"))
	return err
}

func runQueueForget(ctx context.Context, a *app, name string, args []string) error {
	fs := queueFlagSet(a, name)
	ids, err := fs.parseArgs(args, 1, -1, "job IDs")
	if err != nil {
		return err
	}
	in, done, err := inspector(ctx, a, fs)
	if err != nil {
		return err
	}
	defer done()
	n, err := in.Forget(ctx, ids...)
	fmt.Fprintf(a.stdout, "Deleted %d failed %s.\n", n, plural(n, "job", "jobs"))
	return err
}

func runQueueFlush(ctx context.Context, a *app, name string, args []string) error {
	fs := queueFlagSet(a, name)
	hours := fs.Float64("hours", 0, "only jobs that failed more than this many hours ago (default: all)")
	queue := fs.String("queue", "", "only jobs of this queue")
	if err := fs.parseNoArgs(args); err != nil { // --hours -1: refused there
		return err
	}
	if err := checkQueueKind(fs, *queue, ""); err != nil {
		return err
	}
	in, done, err := inspector(ctx, a, fs)
	if err != nil {
		return err
	}
	defer done()
	n, err := in.Flush(ctx, time.Duration(*hours*float64(time.Hour)), *queue)
	if err != nil {
		return err
	}
	if n == 0 {
		noteUnknownQueue(ctx, a, in, *queue)
	}
	fmt.Fprintf(a.stdout, "Deleted %d failed %s.\n", n, plural(int(n), "job", "jobs"))
	return nil
}

// noteUnknownQueue says on stderr, after a --queue filter found nothing,
// that no queue of that name is known, naming the known ones: a typo
// would otherwise read as an empty queue. A queue is known once it has a
// consumer (a dispatch or a worker made it). Nothing is said when the
// name is known or the queues cannot be read.
func noteUnknownQueue(ctx context.Context, a *app, in *bus.Inspector, queue string) {
	if queue == "" {
		return
	}
	st, err := in.Stats(ctx)
	if err != nil {
		return
	}
	if _, err := waitingOn(st, queue); err != nil {
		fmt.Fprintf(a.stderr, "jetfleet queue: note: %v\n", err)
	}
}

// checkQueueKind checks the names given to --queue and --kind; "" is a
// flag not given.
func checkQueueKind(fs *flagSetWithSynopsis, queue, kind string) error {
	for _, c := range []struct{ what, v string }{{"queue", queue}, {"kind", kind}} {
		if c.v == "" {
			continue
		}
		if err := checkName(fs.FlagSet, c.what, c.v); err != nil {
			return err
		}
	}
	return nil
}

// checkTag checks a --tag filter before the command connects: a bad one
// is a usage error naming the flag.
func checkTag(fs *flagSetWithSynopsis, tag string) error {
	if tag == "" {
		return nil
	}
	if err := bus.ValidateTag(tag); err != nil {
		return node.UsageError(fs.FlagSet, "--tag %q: %s", tag, strings.TrimPrefix(err.Error(), bus.ErrInvalid.Error()+": "))
	}
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
