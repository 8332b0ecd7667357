// Command jetfleet runs every part of a jetfleet deployment from one binary:
// an embedded NATS node, the whole system for a newcomer (`up`), job
// dispatch, worker fleets, web nodes and the operator's queue commands.
// Subcommands wire the library packages together and hold no business logic.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/internal/config"
	"github.com/jetfleet/jetfleet/internal/logging"
)

// app is what every subcommand gets: its streams, settings and logger.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         config.Getenv
	log            zerolog.Logger
	// dataDir holds nats.url, the embedded NATS store and the SQLite file.
	dataDir string
	// obs, when set (serve, up, work), is the process's metrics registry
	// and hooks (observe.go).
	obs *observability
}

// command is one subcommand. Aliases are extra names (Laravel's queue:failed).
type command struct {
	name    string
	aliases []string
	summary string
	run     func(ctx context.Context, a *app, args []string) error
}

func commands() []command {
	return []command{
		{name: "up", summary: "run the whole system in one process on embedded defaults", run: runUp},
		{name: "nats", summary: "run one embedded NATS JetStream node (alone or in a cluster)", run: runNATS},
		{name: "dispatch", summary: "enqueue a job from the shell and print its ID", run: runDispatch},
		{name: "schedule", summary: "register, list or remove periodic jobs", run: runSchedule},
		{name: "migrate", summary: "apply the database schema (safe from several processes at once)", run: runMigrate},
		{name: "bench", summary: "measure jobs/s and latency beside a raw JetStream baseline", run: runBench},
		{name: "work", aliases: []string{"queue:work"}, summary: "run a worker process taking jobs from queues", run: runWork},
		{name: "serve", summary: "run a web node: the reference app, /up and a graceful drain", run: runServe},
		{name: "queue", aliases: queueAliases(), summary: "failed jobs (failed/show/retry/forget/flush), stats, monitor, pause/resume", run: runQueue},
	}
}

func main() {
	os.Exit(run(os.Args[1:]))
}

// errUsage marks an error already explained to the user by a flag set.
var errUsage = errors.New("usage")

func run(args []string) int {
	if err := config.LoadDotEnv(".env"); err != nil {
		fmt.Fprintln(os.Stderr, "jetfleet:", err)
		return 2
	}
	a := &app{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		getenv:  os.Getenv,
		log:     logging.New(os.Stderr, os.Getenv("LOG_LEVEL"), os.Getenv("LOG_FORMAT")),
		dataDir: envOr(os.Getenv, "JETFLEET_DATA", "./data"),
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(a.stdout)
		return 0
	}
	cmd, ok := lookup(args[0])
	if !ok {
		fmt.Fprintf(a.stderr, "jetfleet: unknown command %q\n\n", args[0])
		usage(a.stderr)
		return 2
	}
	ctx, stop := signalContext(a)
	defer stop()
	err := cmd.run(ctx, a, commandArgs(cmd.name, args))
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		var ec exitCode
		if errors.As(err, &ec) {
			return int(ec)
		}
		fmt.Fprintf(a.stderr, "jetfleet %s: %v\n", cmd.name, err)
		return 1
	}
}

// exitCode is returned by a command that already printed its result and
// only needs the process to exit with a given status.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// signalContext ends ctx on the first SIGINT or SIGTERM so the command can
// drain; a second signal exits at once.
func signalContext(a *app) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig, ok := <-ch
		if !ok {
			return
		}
		a.log.Info().Str("signal", sig.String()).Msg("draining; send the signal again to exit at once")
		cancel()
		if _, ok := <-ch; ok {
			a.log.Warn().Msg("second signal: exiting now")
			os.Exit(130)
		}
	}()
	return ctx, func() { signal.Stop(ch); close(ch); cancel() }
}

func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
		for _, al := range c.aliases {
			if al == name {
				return c, true
			}
		}
	}
	return command{}, false
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "jetfleet: the scale-out layer for Go services on NATS JetStream")
	fmt.Fprintln(w, "\nUsage: jetfleet <command> [flags]   (jetfleet <command> --help for its flags)")
	fmt.Fprintln(w, "\nCommands:")
	cmds := commands()
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nSettings come from flags, the environment and ./.env (NATS_URL, NATS_USER, NATS_PASSWORD,")
	fmt.Fprintln(w, "NATS_CREDS, NATS_TLS_CA, DB_*, SESSION_*). Without NATS_URL, commands connect to the server")
	fmt.Fprintln(w, "whose URL `jetfleet up` wrote to ./data/nats.url.")
}

// newFlagSet makes a flag set whose usage names the command and its summary.
func newFlagSet(a *app, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() {
		fmt.Fprintf(a.stderr, "Usage: jetfleet %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, mapping a bad flag to errUsage (already printed).
// Flags may follow positional arguments (`dispatch high kind '{}' --tries 3`).
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
		if rest[0] == "--" {
			return append(positional[:len(positional)-1], args...), nil
		}
	}
}

func envOr(getenv config.Getenv, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
