// Command jetfleet runs every part of a jetfleet deployment from one binary:
// an embedded NATS node, the whole system for a newcomer (`up`), job
// dispatch, the operator's queue commands, and a web node and worker
// process of jetfleet's own (package node with no app of its own: /up,
// /metrics, the dashboard and the diagnostic jobs). Subcommands parse flags
// and call the library packages.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/node"
)

// app is what every subcommand gets: its streams, settings and logger.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	log            zerolog.Logger
	// dataDir holds nats.url, the embedded NATS store and the SQLite file.
	dataDir string
}

// nodeConfig is the configuration package node runs with in this process.
func (a *app) nodeConfig() node.Config {
	return node.Config{Getenv: a.getenv, DataDir: a.dataDir, Logger: a.log, Stdout: a.stdout, Stderr: a.stderr}
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
		{name: "up", summary: "run the whole system in one process on embedded defaults (with the catalog demo)", run: runUp},
		{name: "nats", summary: "run one embedded NATS JetStream node (alone or in a cluster)", run: runNATS},
		{name: "dispatch", summary: "enqueue a job from the shell and print its ID", run: runDispatch},
		{name: "schedule", summary: "register, list or remove periodic jobs", run: runSchedule},
		{name: "migrate", summary: "apply the catalog demo's database schema (safe from several processes at once)", run: runMigrate},
		{name: "bench", summary: "measure jobs/s and latency beside a raw JetStream baseline", run: runBench},
		{name: "work", aliases: []string{"queue:work"}, summary: "run a worker process of the diagnostic jobs (your jobs: your binary's `work`, package node)", run: runWork},
		{name: "serve", summary: "run an operations web node: /up, /metrics and the dashboard, with a graceful drain", run: runServe},
		{name: "queue", aliases: queueAliases(), summary: "jobs by ID, recent jobs, cancel, clear; failed jobs (failed/show/retry/forget/flush), stats, monitor, pause/resume", run: runQueue},
	}
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if err := node.LoadDotEnv(".env"); err != nil {
		fmt.Fprintln(os.Stderr, "jetfleet:", err)
		return 2
	}
	lw, log, err := node.NewProcessLogger(os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jetfleet:", err)
		return 2
	}
	defer lw.Close()
	a := &app{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		getenv:  os.Getenv,
		log:     log,
		dataDir: cmp.Or(os.Getenv("JETFLEET_DATA"), "./data"),
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
	ctx, stop := node.SignalContext(a.log)
	defer stop()
	return node.ExitStatus(a.stderr, "jetfleet", cmd.name, cmd.run(ctx, a, commandArgs(cmd.name, args)))
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
	fmt.Fprintln(w, "whose URL `jetfleet up` wrote to ./data/nats.url, with the credentials it wrote to ./data/nats.auth.")
}

// newFlagSet makes a flag set whose usage names the command and its summary.
func newFlagSet(a *app, name, synopsis string) *flag.FlagSet {
	return node.NewFlagSet(a.stderr, "jetfleet", name, synopsis)
}
