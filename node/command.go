package node

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/workers"
)

// Main runs the program as a node of app and exits with its status:
//
//	<name> serve    [--listen 127.0.0.1:8080] [--drain-delay 5s] [--grace 30s] [--nats-down-after 15s] [--agent-listen addr] [--data ./data]
//	<name> work     [--queue high,default] [--concurrency 10] [--tries 3] ... (every `jetfleet work` flag)
//	<name> migrate  apply App.Migrations to the DB_* database
//
// Settings come from the environment and ./.env: NATS_URL (else the URL
// `jetfleet up` wrote to ./data/nats.url, with the credentials of
// ./data/nats.auth), NATS_USER, NATS_PASSWORD,
// NATS_CREDS, NATS_TLS_CA, DB_*, SESSION_*, JETFLEET_*, LOG_LEVEL,
// LOG_FORMAT and LOG_FLUSH_INTERVAL. SIGINT or SIGTERM drains the node; a
// second one exits at once.
func Main(app App) {
	os.Exit(Run(app, os.Args[1:]))
}

// Run is Main without the exit: it returns the exit status (0 done, 1
// failed, 2 bad usage).
func Run(app App, args []string) int {
	if err := LoadDotEnv(".env"); err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		return 2
	}
	lw, log, err := NewProcessLogger(os.Getenv, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "config:", err)
		return 2
	}
	defer lw.Close()
	cfg := Config{Logger: log}.withDefaults()
	prog := cmp.Or(app.Name, (&Node{app: app}).Name())
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(cfg.Stdout, prog)
		return 0
	}
	if !isCommand(args[0]) {
		fmt.Fprintf(cfg.Stderr, "%s: unknown command %q\n\n", prog, args[0])
		usage(cfg.Stderr, prog)
		return 2
	}
	ctx, stop := SignalContext(cfg.Logger)
	defer stop()
	return ExitStatus(cfg.Stderr, prog, args[0], RunCommand(ctx, app, args[0], args[1:], cfg))
}

// commandSummaries are the subcommands RunCommand knows, for usage.
var commandSummaries = [][2]string{
	{"serve", "run a web node: the app's routes, sessions, /up, /metrics, the dashboard and a graceful drain"},
	{"work", "run a worker process taking the app's jobs from queues"},
	{"migrate", "apply the app's database schema (safe from several processes at once)"},
}

func isCommand(name string) bool {
	for _, c := range commandSummaries {
		if c[0] == name {
			return true
		}
	}
	return false
}

func usage(w io.Writer, prog string) {
	fmt.Fprintf(w, "Usage: %s <command> [flags]   (%s <command> --help for its flags)\n\nCommands:\n", prog, prog)
	for _, c := range commandSummaries {
		fmt.Fprintf(w, "  %-8s %s\n", c[0], c[1])
	}
	fmt.Fprintln(w, "\nSettings come from the environment and ./.env: NATS_URL (else ./data/nats.url and nats.auth), NATS_USER,")
	fmt.Fprintln(w, "NATS_PASSWORD, NATS_CREDS, NATS_TLS_CA, DB_*, SESSION_*, JETFLEET_*, LOG_LEVEL, LOG_FORMAT,\nLOG_FLUSH_INTERVAL.")
}

// RunCommand runs the subcommand name ("serve", "work" or "migrate") of
// app with its flags, until ctx ends. It is how jetfleet's own binary runs
// its web node and workers, and how a team's binary can run them beside
// commands of its own.
func RunCommand(ctx context.Context, app App, name string, args []string, cfg Config) error {
	cfg = cfg.withDefaults()
	prog := cmp.Or(app.Name, (&Node{app: app}).Name())
	switch name {
	case "serve":
		return runServe(ctx, app, prog, args, cfg)
	case "work":
		return runWork(ctx, app, prog, args, cfg)
	case "migrate":
		return runMigrate(ctx, app, prog, args, cfg)
	}
	return fmt.Errorf("unknown command %q (want serve, work or migrate)", name)
}

// DefaultHTTPListen is the address `serve` listens on when --listen is not
// given: loopback, so a node is offered to the network only when told to
// (--listen :8080 behind a balancer). JETFLEET_HTTP_DEFAULT_LISTEN
// replaces it.
const DefaultHTTPListen = "127.0.0.1:8080"

func runServe(ctx context.Context, app App, prog string, args []string, cfg Config) error {
	fs := NewFlagSet(cfg.Stderr, prog, "serve", "serve [--listen 127.0.0.1:8080] [--drain-delay 5s] [--grace 30s] [--nats-down-after 15s] [--agent-listen addr] [--data ./data]\n\n"+
		serveSummary(app))
	listen := fs.String("listen", cmp.Or(cfg.Getenv("JETFLEET_HTTP_DEFAULT_LISTEN"), DefaultHTTPListen), "HTTP address (loopback by default; :8080 for every interface, as a node behind a balancer needs)")
	drainDelay := fs.Duration("drain-delay", 5*time.Second, "after SIGTERM, how long /up answers 503 while requests are still served, so the balancer takes the node out (0: none)")
	grace := fs.Duration("grace", 30*time.Second, "then, how long in-flight requests may take to finish")
	natsDown := fs.Duration("nats-down-after", DefaultNATSDownAfter, "how long NATS or the session bucket may fail (a leader election) before /up answers 503; until then it says degraded")
	agentListen := fs.String("agent-listen", "", "address of an HAProxy agent-check port (answers ready, drain or down); off when empty")
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory: nats.url and the SQLite file when NATS_URL and DB_* are unset")
	if err := ParseNoArgs(fs, args); err != nil {
		return err
	}
	if *natsDown < 0 || *drainDelay < 0 || *grace <= 0 {
		return UsageError(fs, "--nats-down-after and --drain-delay must be 0 or more and --grace more than 0 (got %s, %s and %s)", *natsDown, *drainDelay, *grace)
	}
	limits, err := HTTPLimitsFromEnv(cfg.Getenv)
	if err != nil {
		return err
	}
	scfg := ServeConfig{DrainDelay: noneIfZero(*drainDelay), Grace: *grace, NATSDownAfter: noneIfZero(*natsDown), HTTPLimits: limits}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("cannot listen for HTTP on %s (--listen): %w", *listen, err)
	}
	defer ln.Close()
	scfg.Listener = ln
	if *agentListen != "" {
		if scfg.AgentListener, err = net.Listen("tcp", *agentListen); err != nil {
			return fmt.Errorf("cannot listen for the agent check on %s (--agent-listen): %w", *agentListen, err)
		}
	}
	n, err := Open(ctx, app, cfg)
	if err != nil {
		return err
	}
	defer n.Close()
	return n.Serve(ctx, scfg)
}

// serveSummary says what `serve` serves for app, for its usage.
func serveSummary(app App) string {
	what := "/up, /livez, /readyz, /metrics and the dashboard (with JETFLEET_DASHBOARD_* credentials)"
	if app.Routes != nil {
		what = "the app's routes (sessions from SESSION_*), " + what
	}
	s := "Serves " + what + ".\nNATS from NATS_URL (else <data>/nats.url)."
	if app.Migrations != nil {
		s += " The database from DB_* (else SQLite at <data>/jetfleet.db; run `migrate` first)."
	}
	return s
}

// noneIfZero maps a flag's 0 ("none") to the negative value the configs
// read as none (their zero is the default).
func noneIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func runWork(ctx context.Context, app App, prog string, args []string, cfg Config) error {
	fs := NewFlagSet(cfg.Stderr, prog, "work", "work [--queue high,default] [--concurrency 10] [--tries 3] [--timeout 60s] [--backoff 1s,10s,60s] [--grace 30s]\n"+
		"     [--max-jobs N] [--max-time 1h] [--stop-when-empty] [--ack-wait 30s] [--no-diagnostics] [--metrics-listen :9464]\n"+
		"     [--health-listen 127.0.0.1:9465] [--stuck-after 1m]")
	envBus, err := bus.ConfigFromEnv(cfg.Getenv)
	if err != nil {
		return err
	}
	wf := workFlags(fs, app, envBus)
	if err := ParseNoArgs(fs, args); err != nil {
		return err
	}
	wcfg, err := wf.config(fs)
	if err != nil {
		return err
	}
	if wcfg.MetricsLimits, err = HTTPLimitsFromEnv(cfg.Getenv); err != nil {
		return err
	}
	if err := wf.listen(&wcfg); err != nil {
		return err
	}
	n, err := Open(ctx, app, cfg)
	if err != nil {
		return err
	}
	defer n.Close()
	return n.Work(ctx, wcfg)
}

// workFlagValues are the flags of `work`.
type workFlagValues struct {
	queues, backoff, metricsListen   *string
	healthListen                     *string
	concurrency, tries, maxJobs      *int
	timeout, grace, maxTime, ackWait *time.Duration
	stuckAfter                       *time.Duration
	stopWhenEmpty, noDiagnostics     *bool
}

func workFlags(fs *flag.FlagSet, app App, envBus bus.Config) workFlagValues {
	return workFlagValues{
		queues:        fs.String("queue", strings.Join(app.queues(), ","), "queues in priority order (strict), or with weights: high:6,default:3,low:1"),
		concurrency:   fs.Int("concurrency", 10, "jobs run at once by this process"),
		tries:         fs.Int("tries", 3, "deliveries a job may use unless it sets its own"),
		timeout:       fs.Duration("timeout", 60*time.Second, "time limit of one attempt unless the job sets its own"),
		backoff:       fs.String("backoff", "", "delays before retries, e.g. 1s,10s,60s (default exponential from 1s with jitter)"),
		grace:         fs.Duration("grace", 30*time.Second, "on SIGTERM, how long running jobs may finish before they are handed back"),
		maxJobs:       fs.Int("max-jobs", 0, "stop after this many jobs (0: no limit)"),
		maxTime:       fs.Duration("max-time", 0, "stop after running this long (0: no limit)"),
		stopWhenEmpty: fs.Bool("stop-when-empty", false, "stop when the queues have no ready job"),
		ackWait:       fs.Duration("ack-wait", cmp.Or(envBus.AckWait, 30*time.Second), "how long the server waits for a heartbeat before redelivering a job; set the same on every worker of a queue"),
		noDiagnostics: fs.Bool("no-diagnostics", false, "do not register jetfleet-noop, jetfleet-sleep and jetfleet-fail"),
		metricsListen: fs.String("metrics-listen", "", "address to serve Prometheus /metrics on; a bare port or :port is loopback (give 0.0.0.0:9464 for a scraper elsewhere); off when empty"),
		healthListen:  fs.String("health-listen", "", "address to serve /livez and /readyz on; a bare port or :port is loopback (give 0.0.0.0:9465 for a kubelet); the --metrics-listen address shares its server; off when empty"),
		stuckAfter:    fs.Duration("stuck-after", workers.DefaultStuckAfter, "how long one step of the fetch loop (a queue's pull and its jobs) may take before /livez reports it stuck; at least 10s"),
	}
}

// MaxWorkConcurrency is the most jobs one `work` process runs at once:
// each run slot has a goroutine of its own from the start.
const MaxWorkConcurrency = 10_000

func (f workFlagValues) config(fs *flag.FlagSet) (WorkConfig, error) {
	cfg := WorkConfig{NoDiagnostics: *f.noDiagnostics, Worker: workers.Config{
		Queues: SplitList(*f.queues), Concurrency: *f.concurrency, Tries: *f.tries, Timeout: *f.timeout,
		Grace: *f.grace, MaxJobs: *f.maxJobs, MaxTime: *f.maxTime, StopWhenEmpty: *f.stopWhenEmpty,
		Bus: bus.Config{AckWait: *f.ackWait}, StuckAfter: *f.stuckAfter,
	}}
	if err := f.check(fs); err != nil {
		return cfg, err
	}
	if *f.backoff != "" {
		var err error
		if cfg.Worker.Backoff, err = bus.ParseBackoff(*f.backoff); err != nil {
			return cfg, UsageError(fs, "--backoff: %v", err)
		}
	}
	return cfg, nil
}

// check refuses the values of work's flags that the worker would
// otherwise replace with its defaults, or that cannot work.
func (f workFlagValues) check(fs *flag.FlagSet) error {
	switch {
	case *f.concurrency < 1 || *f.concurrency > MaxWorkConcurrency:
		return UsageError(fs, "--concurrency %d: want 1 to %d", *f.concurrency, MaxWorkConcurrency)
	case *f.tries < 1:
		return UsageError(fs, "--tries %d: want at least 1", *f.tries)
	case *f.timeout <= 0:
		return UsageError(fs, "--timeout %s: want a positive duration", *f.timeout)
	case *f.grace <= 0:
		return UsageError(fs, "--grace %s: want a positive duration", *f.grace)
	case *f.maxJobs < 0:
		return UsageError(fs, "--max-jobs %d: want 0 (no limit) or more", *f.maxJobs)
	case *f.maxTime < 0:
		return UsageError(fs, "--max-time %s: want 0 (no limit) or more", *f.maxTime)
	case *f.ackWait < time.Second:
		return UsageError(fs, "--ack-wait %s: want at least 1s", *f.ackWait)
	case *f.stuckAfter < workers.MinStuckAfter:
		return UsageError(fs, "--stuck-after must be at least %s (got %s): each pull of the fetch loop waits up to 5s for NATS to answer, so less would fail /livez during a NATS outage", workers.MinStuckAfter, *f.stuckAfter)
	}
	return nil
}

// listen opens --metrics-listen and --health-listen, loopback unless an
// address names a host; the probes share the metrics listener when the
// two name the same address.
func (f workFlagValues) listen(cfg *WorkConfig) error {
	metrics, health := *f.metricsListen, *f.healthListen
	if metrics != "" {
		ln, err := net.Listen("tcp", LoopbackDefault(metrics))
		if err != nil {
			return fmt.Errorf("cannot listen for metrics on %s (--metrics-listen): %w", LoopbackDefault(metrics), err)
		}
		cfg.MetricsListener = ln
	}
	switch {
	case health == "":
		return nil
	case metrics != "" && LoopbackDefault(health) == LoopbackDefault(metrics):
		cfg.HealthListener = cfg.MetricsListener
		return nil
	}
	ln, err := net.Listen("tcp", LoopbackDefault(health))
	if err != nil {
		return fmt.Errorf("cannot listen for the probes on %s (--health-listen): %w", LoopbackDefault(health), err)
	}
	cfg.HealthListener = ln
	return nil
}

// LoopbackDefault is addr with 127.0.0.1 as its host when it names only a
// port ("9465" or ":9465"): listeners that are loopback unless told
// otherwise (--health-listen, --metrics-listen, `jetfleet nats
// --monitor-listen`).
func LoopbackDefault(addr string) string {
	if !strings.Contains(addr, ":") {
		return net.JoinHostPort("127.0.0.1", addr)
	}
	if host, port, err := net.SplitHostPort(addr); err == nil && host == "" {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

func runMigrate(ctx context.Context, app App, prog string, args []string, cfg Config) error {
	fs := NewFlagSet(cfg.Stderr, prog, "migrate", "migrate\n\n"+
		"Applies jetfleet's own tables (the job outbox) and the database schema that this binary embeds\n"+
		"to the database named by DB_CONNECTION,\n"+
		"DB_HOST/DB_WRITE_HOST, DB_PORT, DB_DATABASE, DB_USERNAME and DB_PASSWORD (default: SQLite\n"+
		"at ./data/jetfleet.db). Safe to run from several processes at once.")
	if err := ParseNoArgs(fs, args); err != nil {
		return err
	}
	if app.Migrations == nil {
		return errors.New("this program has no database schema to apply")
	}
	db, err := OpenDB(ctx, cfg.Getenv, cfg.DataDir, func(c *readmodel.Config) { c.Logger = cfg.Logger })
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := readmodel.MigrateAll(ctx, db, app.Migrations)
	for _, name := range applied {
		fmt.Fprintf(cfg.Stdout, "applied %s\n", name)
	}
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(cfg.Stdout, "nothing to apply: the schema is up to date")
	}
	return nil
}
