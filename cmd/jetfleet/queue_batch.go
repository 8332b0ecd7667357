package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/node"
)

// batchQueueCommands are the `queue` subcommands of batches and chains.
func batchQueueCommands() []queueCommand {
	return []queueCommand{
		{"batches", "[--json]", "list batches: progress, state, creation", runQueueBatches},
		{"batch", "<id> [--jobs failed,pending] [--limit 50] [--json]", "show a batch (or a chain's steps): progress, callbacks, jobs", runQueueBatch},
	}
}

// batchView is a batch as --json prints it.
type batchView struct {
	ID            string         `json:"id"`
	Name          string         `json:"name,omitempty"`
	State         string         `json:"state"`
	Total         int            `json:"total"`
	Pending       int            `json:"pending"`
	Succeeded     int            `json:"succeeded"`
	Failed        int            `json:"failed"`
	Skipped       int            `json:"skipped"`
	AllowFailures bool           `json:"allow_failures,omitempty"`
	Cancelled     bool           `json:"cancelled,omitempty"`
	CancelReason  string         `json:"cancel_reason,omitempty"`
	CreatedAt     time.Time      `json:"created_at"`
	FinishedAt    *time.Time     `json:"finished_at,omitempty"`
	Chain         string         `json:"chain,omitempty"`
	Step          int            `json:"step,omitempty"`
	Steps         int            `json:"steps,omitempty"`
	Callbacks     []callbackView `json:"callbacks,omitempty"`
	Jobs          []batchJobView `json:"jobs,omitempty"`
}

// callbackView is a callback as --json prints it: a job (queue and kind),
// or a chain's next step (next_step, the step's batch ID in id, no kind).
type callbackView struct {
	Name     string `json:"name"`
	ID       string `json:"id"`
	Queue    string `json:"queue,omitempty"`
	Kind     string `json:"kind,omitempty"`
	NextStep bool   `json:"next_step,omitempty"`
	Released bool   `json:"released"`
}

// callbackViewOf is cb as --json prints it. A chain's next step is the
// callback with no queue (bus.BatchCallback: its Kind is display text).
func callbackViewOf(cb bus.BatchCallback) callbackView {
	v := callbackView{Name: cb.Name, ID: cb.ID, Queue: cb.Queue, Kind: cb.Kind, Released: cb.Released}
	if cb.Queue == "" {
		v.Kind, v.NextStep = "", true
	}
	return v
}

// batchJobView is one job of a batch as --json prints it.
type batchJobView struct {
	Index int    `json:"index"`
	ID    string `json:"id"`
	// State is pending, succeeded, failed or skipped.
	State string `json:"state"`
}

// batchJobs lists the jobs of batch id in states (none: all), at most
// limit (0: all), as --json prints them.
func batchJobs(ctx context.Context, in *bus.Inspector, id string, limit int, states []string) ([]batchJobView, error) {
	jobs, err := in.BatchJobs(ctx, id, limit, states...)
	if err != nil {
		return nil, err
	}
	out := make([]batchJobView, len(jobs))
	for i, j := range jobs {
		out[i] = batchJobView{Index: j.Index, ID: j.ID, State: j.State}
	}
	return out, nil
}

func batchViewOf(s bus.BatchStatus) batchView {
	v := batchView{
		ID: s.ID, Name: s.Name, State: string(s.State), Total: s.Total, Pending: s.Pending, Succeeded: s.Succeeded,
		Failed: s.Failed, Skipped: s.Skipped, AllowFailures: s.AllowFailures, Cancelled: s.Cancelled, CancelReason: s.CancelReason,
		CreatedAt: s.CreatedAt, Chain: s.Chain, Step: s.Step, Steps: s.Steps,
	}
	if !s.FinishedAt.IsZero() {
		v.FinishedAt = &s.FinishedAt
	}
	for _, cb := range s.Callbacks {
		v.Callbacks = append(v.Callbacks, callbackViewOf(cb))
	}
	return v
}

func runQueueBatches(ctx context.Context, a *app, name string, args []string) error {
	fs := queueFlagSet(a, name)
	asJSON := fs.Bool("json", false, "print a JSON array instead of a table")
	if err := fs.parseNoArgs(args); err != nil {
		return err
	}
	in, done, err := inspector(ctx, a, fs)
	if err != nil {
		return err
	}
	defer done()
	list, err := in.Batches(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		views := make([]batchView, 0, len(list))
		for _, s := range list {
			views = append(views, batchViewOf(s))
		}
		return writeJSON(a.stdout, views)
	}
	if len(list) == 0 {
		fmt.Fprintln(a.stdout, "No batches.")
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tTOTAL\tPENDING\tFAILED\tSTATE\tCREATED")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\n", s.ID, clip(s.Name, 40), s.Total, s.Pending, s.Failed, s.State, s.CreatedAt.Local().Format(time.DateTime))
	}
	return tw.Flush()
}

func runQueueBatch(ctx context.Context, a *app, name string, args []string) error {
	fs := queueFlagSet(a, name)
	jobs := fs.String("jobs", "failed,pending", "which jobs to list: states among pending, succeeded, failed, skipped, or all")
	limit := fs.Int("limit", 50, "list at most this many jobs (0: all)")
	asJSON := fs.Bool("json", false, "print JSON")
	rest, err := fs.parseArgs(args, 1, 1, "a batch or chain ID")
	if err != nil {
		return err
	}
	states, err := jobStates(*jobs)
	if err != nil {
		return node.UsageError(fs.FlagSet, "%v", err)
	}
	in, done, err := inspector(ctx, a, fs)
	if err != nil {
		return err
	}
	defer done()
	id := rest[0]
	st, err := in.Batch(ctx, id)
	if errors.Is(err, bus.ErrUnknownBatch) || errors.Is(err, bus.ErrInvalid) {
		steps, cerr := in.Chain(ctx, id)
		if cerr != nil {
			return fmt.Errorf("no batch or chain %q (or it expired)", id)
		}
		return printChain(ctx, a, in, id, steps, states, *limit, *asJSON)
	}
	if err != nil {
		return err
	}
	v := batchViewOf(st)
	if v.Jobs, err = batchJobs(ctx, in, id, *limit, states); err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(a.stdout, v)
	}
	printBatch(a.stdout, v, states)
	return nil
}

// jobsIn is how many of the batch's jobs are in states (none: all).
func (v batchView) jobsIn(states []string) int {
	if len(states) == 0 {
		return v.Total
	}
	n := 0
	for _, st := range states {
		n += map[string]int{"pending": v.Pending, "succeeded": v.Succeeded, "failed": v.Failed, "skipped": v.Skipped}[st]
	}
	return n
}

// jobStates reads --jobs.
func jobStates(s string) ([]string, error) {
	if s == "all" {
		return nil, nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		switch p = strings.TrimSpace(p); p {
		case "pending", "succeeded", "failed", "skipped":
			out = append(out, p)
		case "":
		default:
			return nil, fmt.Errorf("--jobs %q: want states among pending, succeeded, failed, skipped, or all", s)
		}
	}
	return out, nil
}

func printChain(ctx context.Context, a *app, in *bus.Inspector, id string, steps []bus.BatchStatus, states []string, limit int, asJSON bool) error {
	views := make([]batchView, len(steps))
	for i, s := range steps {
		views[i] = batchViewOf(s)
		var err error
		if views[i].Jobs, err = batchJobs(ctx, in, s.ID, limit, states); err != nil {
			return err
		}
	}
	if asJSON {
		return writeJSON(a.stdout, map[string]any{"chain": id, "steps": views})
	}
	fmt.Fprintf(a.stdout, "Chain %s: %d of %d steps dispatched\n", id, len(steps), steps[0].Steps)
	for _, v := range views {
		fmt.Fprintln(a.stdout)
		printBatch(a.stdout, v, states)
	}
	return nil
}

func printBatch(w io.Writer, v batchView, states []string) {
	w = termSafe(w) // bodies, headers, errors: anyone who can publish wrote them
	title := "Batch " + v.ID
	if v.Name != "" {
		title += " (" + v.Name + ")"
	}
	fmt.Fprintln(w, title)
	fmt.Fprintf(w, "  state      %s", v.State)
	if v.CancelReason != "" {
		fmt.Fprintf(w, " (%s)", v.CancelReason)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  progress   %d total, %d pending, %d succeeded, %d failed, %d skipped  %s\n", v.Total, v.Pending, v.Succeeded, v.Failed, v.Skipped, progressBar(v, 30))
	if v.AllowFailures {
		fmt.Fprintln(w, "  options    failures allowed")
	}
	if v.Chain != "" {
		fmt.Fprintf(w, "  chain      %s, step %d of %d\n", v.Chain, v.Step, v.Steps)
	}
	fmt.Fprintf(w, "  created    %s\n", v.CreatedAt.Local().Format(time.DateTime))
	if v.FinishedAt != nil {
		fmt.Fprintf(w, "  finished   %s\n", v.FinishedAt.Local().Format(time.DateTime))
	}
	if len(v.Callbacks) > 0 {
		fmt.Fprintln(w, "  callbacks")
		for _, cb := range v.Callbacks {
			state := "waiting"
			if cb.Released {
				state = "dispatched"
			}
			where := cb.Queue + "/" + cb.Kind
			if cb.NextStep {
				where = "next step"
			}
			fmt.Fprintf(w, "    %-8s %-40s %-10s %s\n", cb.Name, where, state, cb.ID)
		}
	}
	if len(v.Jobs) > 0 {
		fmt.Fprintln(w, "  jobs")
		for _, j := range v.Jobs {
			fmt.Fprintf(w, "    %-10s %s\n", j.State, j.ID)
		}
		if in := v.jobsIn(states); len(v.Jobs) < in {
			fmt.Fprintf(w, "    … (the first %d of %d; --limit 0 lists all)\n", len(v.Jobs), in)
		}
	}
}

// progressBar draws how much of the batch has finished, width characters
// wide.
func progressBar(v batchView, width int) string {
	if v.Total == 0 {
		return ""
	}
	done := (v.Total - v.Pending) * width / v.Total
	return "[" + strings.Repeat("#", done) + strings.Repeat(".", width-done) + "]"
}

// cancelBatch is `queue cancel --batch <id>`: a batch's or a chain's
// pending jobs never run.
func cancelBatch(ctx context.Context, a *app, in *bus.Inspector, batch string) error {
	if err := in.CancelBatch(ctx, batch); err != nil {
		switch {
		case errors.Is(err, bus.ErrUnknownBatch):
			return fmt.Errorf("no batch or chain %q (or it expired)", batch)
		case errors.Is(err, bus.ErrBatchFinished):
			return fmt.Errorf("batch %s has finished: nothing to cancel", batch)
		}
		return err
	}
	fmt.Fprintf(a.stdout, "Cancelled %s: its pending jobs will be skipped; jobs already running finish.\n", batch)
	return nil
}
