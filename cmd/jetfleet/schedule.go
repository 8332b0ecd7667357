package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/settle"
	"github.com/jetfleet/jetfleet/node"
)

const scheduleUsage = `Usage: jetfleet schedule <add|ls|rm> ...

Periodic jobs live in the JOBS stream and are fired by JetStream's message
scheduler, so they need no jetfleet process to be running.

  jetfleet schedule add <name> <spec> <queue> <kind> <json|-> [--tries N] [--timeout D] [--backoff 1s,10s]
      register (or replace) the periodic job <name>; <spec> is "@every 1m",
      @hourly, @daily, @weekly, @monthly, @yearly or a cron expression
      ("*/5 * * * *", or 6 fields with seconds first), in UTC unless
      it starts with a time zone: "CRON_TZ=Europe/Berlin 0 9 * * 1-5"
  jetfleet schedule ls
      list the registered periodic jobs
  jetfleet schedule rm <name>
      remove a periodic job

jetfleet schedule <add|ls|rm> --help shows each one's flags.
`

// runSchedule is `jetfleet schedule add|ls|rm`.
func runSchedule(ctx context.Context, a *app, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(a.stderr, scheduleUsage)
		return node.ErrUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(a.stderr, scheduleUsage)
		return flag.ErrHelp
	case "add":
		return scheduleAdd(ctx, a, args[1:])
	case "ls", "list":
		return scheduleList(ctx, a, args[1:])
	case "rm", "remove":
		return scheduleRemove(ctx, a, args[1:])
	}
	fmt.Fprintf(a.stderr, "jetfleet schedule: unknown subcommand %q\n\n%s", args[0], scheduleUsage)
	return node.ErrUsage
}

func scheduleAdd(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "schedule add", "schedule add <name> <spec> <queue> <kind> <json|-> [--tries N] [--timeout D] [--backoff 1s,10s]\n\n"+
		"Registers the periodic job <name>, replacing any of that name. <spec>: \"@every 1m\", @hourly, @daily,\n"+
		"@weekly, @monthly, @yearly, or a cron expression of 5 fields (or 6, seconds first), in UTC unless\n"+
		"it starts with CRON_TZ=<IANA zone> and a space: \"CRON_TZ=Europe/Berlin 0 9 * * 1-5\".")
	jf := newJobFlags(fs, false)
	dataDir := dataFlag(fs, a)
	pos, err := node.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 5 {
		fmt.Fprintf(a.stderr, "jetfleet schedule add: want 5 arguments (name, spec, queue, kind, body), got %d\n", len(pos))
		fs.Usage()
		return node.ErrUsage
	}
	name, spec, queue, kind := pos[0], pos[1], pos[2], pos[3]
	for _, c := range []struct{ what, v string }{{"schedule", name}, {"queue", queue}, {"kind", kind}} {
		if err := checkName(fs, c.what, c.v); err != nil {
			return err
		}
	}
	if err := checkSpec(spec); err != nil {
		return node.UsageError(fs, "<spec> %q: %v", spec, err)
	}
	opts, err := jf.options()
	if err != nil {
		return err
	}
	body, err := jobBody(a, fs, pos[4])
	if err != nil {
		return err
	}
	d, closeConn, err := openDispatcher(ctx, a, *dataDir, "jetfleet schedule")
	if err != nil {
		return err
	}
	defer closeConn()
	err = d.ScheduleJSON(ctx, name, spec, kind, body, append(opts, bus.OnQueue(queue))...)
	if errors.Is(err, bus.ErrInvalid) { // a spec whose values the server refuses
		return node.UsageError(fs, "%s", invalidText(err))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "scheduled %s: %s -> jobs.%s.%s\n", name, spec, queue, kind)
	return nil
}

// checkSpec checks the form of a schedule's <spec> before `schedule add`
// connects (bus.ValidateScheduleSpec; the server judges its cron fields'
// values) and returns what is wrong with it.
func checkSpec(spec string) error {
	err := bus.ValidateScheduleSpec(spec)
	if err == nil {
		return nil
	}
	return errors.New(strings.TrimPrefix(invalidText(err), fmt.Sprintf("schedule spec %q: ", strings.TrimSpace(spec))))
}

// scheduleDispatcher connects for ls and rm, which never provision: with no
// JOBS stream there is no schedule, and found is false.
func scheduleDispatcher(ctx context.Context, a *app, dataDir string) (d *bus.Dispatcher, closeFn func(), found bool, err error) {
	nc, js, err := node.ConnectNATS(a.getenv, dataDir, "jetfleet schedule")
	if err != nil {
		return nil, nil, false, err
	}
	// Asked again while the cluster elects JOBS's leader (a node was lost).
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = settle.Retry(sctx, 3*time.Second, func(ctx context.Context) error {
		_, err := js.Stream(ctx, bus.JobsStream)
		return err
	})
	if err != nil {
		nc.Close()
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, nil, false, nil
		}
		return nil, nil, false, fmt.Errorf("NATS at %s: %w", node.ConnectedURL(nc), err)
	}
	d, err = bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		nc.Close()
		return nil, nil, false, err
	}
	return d, nc.Close, true, nil
}

func scheduleList(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "schedule ls", "schedule ls [--json]\n\nLists the periodic jobs: name, spec, target subject, settings and body.")
	dataDir := dataFlag(fs, a)
	asJSON := fs.Bool("json", false, "print a JSON array: name, spec, queue, kind, subject, settings (tries, timeout, backoff) and body")
	rest, err := node.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := node.NoArgs(fs, rest); err != nil {
		return err
	}
	d, closeFn, found, err := scheduleDispatcher(ctx, a, *dataDir)
	if err != nil {
		return err
	}
	var list []bus.Schedule
	if found {
		defer closeFn()
		if list, err = d.Schedules(ctx); err != nil {
			return err
		}
	}
	slices.SortFunc(list, func(x, y bus.Schedule) int { return strings.Compare(x.Name, y.Name) })
	if *asJSON {
		return writeJSON(a.stdout, schedulesJSON(list))
	}
	if len(list) == 0 {
		fmt.Fprintln(a.stderr, "no periodic jobs")
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSPEC\tTARGET\tSETTINGS\tBODY")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.Spec, bus.JobSubject(s.Queue, s.Kind), settings(s), s.Body)
	}
	return tw.Flush()
}

// scheduleJSON is a schedule in `schedule ls --json`.
type scheduleJSON struct {
	Name     string            `json:"name"`
	Spec     string            `json:"spec"`
	Queue    string            `json:"queue"`
	Kind     string            `json:"kind"`
	Subject  string            `json:"subject"`
	Settings map[string]string `json:"settings"`
	Body     json.RawMessage   `json:"body"`
}

func schedulesJSON(list []bus.Schedule) []scheduleJSON {
	out := []scheduleJSON{}
	for _, s := range list {
		settings := map[string]string{}
		for _, h := range scheduleSettings() {
			if v := s.Header.Get(h.header); v != "" {
				settings[h.key] = v
			}
		}
		body := json.RawMessage(s.Body)
		if !json.Valid(body) {
			body, _ = json.Marshal(string(s.Body)) // not written by jetfleet: shown as a string
		}
		out = append(out, scheduleJSON{Name: s.Name, Spec: s.Spec, Queue: s.Queue, Kind: s.Kind,
			Subject: bus.JobSubject(s.Queue, s.Kind), Settings: settings, Body: body})
	}
	return out
}

// scheduleSettings are the job headers `schedule ls` shows, with the name
// it shows each under.
func scheduleSettings() []struct{ key, header string } {
	return []struct{ key, header string }{
		{"tries", bus.HeaderTries}, {"timeout", bus.HeaderTimeout}, {"backoff", bus.HeaderBackoff},
	}
}

// settings shows a schedule's job headers as tries=3 timeout=90s ...
func settings(s bus.Schedule) string {
	var out []string
	for _, h := range scheduleSettings() {
		if v := s.Header.Get(h.header); v != "" {
			out = append(out, h.key+"="+v)
		}
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, " ")
}

func scheduleRemove(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "schedule rm", "schedule rm <name>\n\nRemoves the periodic job <name>. Removing a name that is not registered changes nothing.")
	dataDir := dataFlag(fs, a)
	pos, err := node.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fmt.Fprintf(a.stderr, "jetfleet schedule rm: want 1 argument (name), got %d\n", len(pos))
		fs.Usage()
		return node.ErrUsage
	}
	name := pos[0]
	if err := checkName(fs, "schedule", name); err != nil {
		return err
	}
	d, closeFn, found, err := scheduleDispatcher(ctx, a, *dataDir)
	if err != nil {
		return err
	}
	if found {
		defer closeFn()
		list, err := d.Schedules(ctx)
		if err != nil {
			return err
		}
		found = slices.ContainsFunc(list, func(s bus.Schedule) bool { return s.Name == name })
	}
	if !found {
		fmt.Fprintf(a.stderr, "no periodic job named %s; nothing removed\n", name)
		return nil
	}
	if err := d.Unschedule(ctx, name); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "removed %s\n", name)
	return nil
}
