package main

import (
	"cmp"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/node"
)

// upOptions are the settings of `jetfleet up`.
type upOptions struct {
	dataDir string
	// listen is the embedded server's client address; listenSet says the
	// user chose it, so a taken port is an error rather than a fallback.
	listen    string
	listenSet bool
	sync      syncPolicy
	replicas  int
	queues    []string

	// httpListen is the HTTP address; httpListenSet says the user chose it.
	httpListen    string
	httpListenSet bool
	drainDelay    time.Duration
	grace         time.Duration
	// noWorkers runs no workers in the process (tests of the bus alone,
	// or a fleet of the catalog's `work` processes elsewhere).
	noWorkers bool
	// noAuth runs the embedded NATS server without credentials.
	noAuth bool
}

// system is everything `up` runs in one process. Its parts start in order;
// each part that started registers how to stop it, and shutdown stops them
// in reverse order. Later parts (the HTTP node, the workers) are added to
// parts and use the connection the earlier ones made.
type system struct {
	a    *app
	opts upOptions
	log  zerolog.Logger

	// srv is the embedded NATS server; nil when NATS_URL names another one.
	srv *natsembed.Server
	// natsURL is the client URL of the server in use (password redacted
	// when it came from NATS_URL).
	natsURL string
	nc      *nats.Conn
	js      jetstream.JetStream

	// node is the catalog demo on the system's connection.
	node *node.Node
	// httpURL is where the HTTP node really listens.
	httpURL string
	// failed receives the error of a part that stopped by itself.
	failed chan error

	stops []stopStep
}

// part is one start step of the system.
type part struct {
	name  string
	start func(ctx context.Context) error
}

// stopStep undoes one started part.
type stopStep struct {
	name string
	stop func()
}

func (s *system) parts() []part {
	return []part{
		{"nats", s.startNATS},
		{"bus", s.startBus},
		{"node", s.startNode},
		{"http", s.startHTTP},
		{"workers", s.startWorkers},
	}
}

// fail reports that a running part stopped by itself; runUp then stops all.
func (s *system) fail(err error) {
	select {
	case s.failed <- err:
	default: // one failure is enough to stop
	}
}

// onStop registers how to stop a part that has started.
func (s *system) onStop(name string, stop func()) {
	s.stops = append(s.stops, stopStep{name, stop})
}

// shutdown stops every started part, the last started first.
func (s *system) shutdown() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		st := s.stops[i]
		st.stop()
		s.log.Debug().Str("part", st.name).Msg("stopped")
	}
	s.stops = nil
}

// runUp is `jetfleet up`: the whole system in one process on embedded
// defaults, until ctx ends (SIGINT or SIGTERM), then a clean shutdown.
func runUp(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "up", "up [--listen 127.0.0.1:8080] [--nats-listen 127.0.0.1:4222] [--data ./data] [--sync-interval 2m|always] [--replicas 1] [--queues high,default,emails] [--drain-delay 0] [--grace 30s] [--no-workers] [--no-auth]")
	httpListen := fs.String("listen", cmp.Or(a.getenv("JETFLEET_HTTP_DEFAULT_LISTEN"), defaultHTTPListen), "HTTP address of the web node (loopback by default; on another address the dashboard needs JETFLEET_DASHBOARD_TOKEN); when not given and taken, a free port is used with a warning")
	drainDelay := fs.Duration("drain-delay", 0, "on Ctrl-C, how long /up answers 503 before the listener closes (0: none; there is no balancer in front of up)")
	grace := fs.Duration("grace", 30*time.Second, "on Ctrl-C, how long in-flight requests and running jobs may take to finish")
	noWorkers := fs.Bool("no-workers", false, "run no workers in this process (the catalog's jobs wait for a \"catalog work\" process: go run ./examples/catalog work)")
	listen := fs.String("nats-listen", natsDefaultListen(a.getenv), "client address of the embedded NATS server; when not given and taken, a free port is used with a warning")
	dataDir := fs.String("data", a.dataDir, "data directory: NATS store under <data>/nats, client URL in <data>/nats.url, SQLite read model <data>/jetfleet.db")
	syncFlag := fs.String("sync-interval", "", "fsync interval of the embedded file store (e.g. 1s, 2m) or \"always\"; default the server's 2m")
	replicas := fs.Int("replicas", 1, "replicas of the JOBS and DLQ streams (3 when NATS_URL names a 3-node cluster)")
	queues := fs.String("queues", "high,default,emails", "queues whose consumers are provisioned")
	noAuth := fs.Bool("no-auth", false, "run the embedded NATS server without credentials (by default it requires those it generated in <data>/nats.auth, which commands run from this directory use)")
	rest, err := node.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := node.NoArgs(fs, rest); err != nil {
		return err
	}
	opts := upOptions{
		dataDir:   *dataDir,
		listen:    *listen,
		listenSet: node.FlagsSet(fs)["nats-listen"],
		replicas:  *replicas,
		queues:    node.SplitList(*queues),

		httpListen:    *httpListen,
		httpListenSet: node.FlagsSet(fs)["listen"],
		drainDelay:    *drainDelay,
		grace:         *grace,
		noWorkers:     *noWorkers,
		noAuth:        *noAuth,
	}
	if opts.drainDelay < 0 || opts.grace <= 0 {
		return node.UsageError(fs, "--drain-delay must be 0 or more and --grace more than 0 (got %s and %s)", opts.drainDelay, opts.grace)
	}
	if opts.sync, err = parseSyncPolicy(*syncFlag); err != nil {
		return node.UsageError(fs, "%v", err)
	}
	if opts.replicas < 1 {
		return node.UsageError(fs, "--replicas %d: must be at least 1", opts.replicas)
	}
	for _, q := range opts.queues {
		if err := bus.ValidateName("queue", q); err != nil {
			return node.UsageError(fs, "--queues: %v", invalidText(err))
		}
	}

	sys := &system{a: a, opts: opts, log: a.log, failed: make(chan error, 1)}
	// Parts that run in the background (HTTP, workers) stop when runCtx
	// ends: on a signal, or when another part failed.
	runCtx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		sys.shutdown()
		a.log.Info().Msg("jetfleet stopped")
	}()
	for _, p := range sys.parts() {
		if err := p.start(runCtx); err != nil {
			if ctx.Err() != nil { // a signal during start-up: not a failure
				return nil
			}
			return fmt.Errorf("start %s: %w", p.name, err)
		}
	}
	a.log.Info().Str("nats_url", sys.natsURL).Str("http_url", sys.httpURL).Strs("queues", opts.queues).
		Bool("workers", !opts.noWorkers).Msg("jetfleet is up; press Ctrl-C to stop")
	fmt.Fprintf(a.stdout, "jetfleet is up: %s\n", sys.httpURL)
	fmt.Fprintln(a.stdout, "Tour: open it, log in, create an item and upload a picture; then try `jetfleet queue stats` and `jetfleet dispatch default jetfleet-noop '{}'` (README.md: The five-minute tour).")
	select {
	case <-ctx.Done():
		return nil
	case err := <-sys.failed:
		return err
	}
}

// startNATS embeds a NATS server with JetStream, or connects to the servers
// of NATS_URL when it is set, and records the client URL for later commands.
func (s *system) startNATS(ctx context.Context) error {
	if env := s.a.getenv("NATS_URL"); env != "" {
		return s.connectExternal(env)
	}
	listen, fellBack, err := chooseListen(s.opts.listen, s.opts.listenSet, "nats-listen")
	if err != nil {
		return err
	}
	user, password, err := s.natsAuth()
	if err != nil {
		return err
	}
	srv, err := natsembed.Start(natsembed.Config{
		Name:         "jetfleet",
		User:         user,
		Password:     password,
		Listen:       listen,
		StoreDir:     filepath.Join(s.opts.dataDir, "nats"),
		SyncInterval: s.opts.sync.interval,
		SyncAlways:   s.opts.sync.always,
		Logger:       s.log.With().Str("component", "nats-server").Logger(),
		QuietNotices: true,
	})
	if err != nil {
		return err
	}
	s.srv = srv
	s.onStop("nats-server", srv.Shutdown)
	s.natsURL = srv.ClientURL()
	if fellBack {
		warnFallback(s.a, s.opts.listen, s.natsURL, "nats-listen")
	}
	if err := srv.JetStreamReady(30 * time.Second); err != nil {
		return err
	}
	go watchStore(ctx, s.a, srv)
	nc, err := nats.Connect(s.natsURL, nats.Name("jetfleet up"), nats.MaxReconnects(-1), nats.ReconnectWait(250*time.Millisecond), nats.UserInfo(user, password))
	if err != nil {
		return fmt.Errorf("connect to the embedded NATS server at %s: %w", s.natsURL, err)
	}
	if err := s.useConn(nc); err != nil {
		return err
	}
	if err := node.WriteNATSURL(s.opts.dataDir, s.natsURL); err != nil {
		return err
	}
	s.log.Info().Str("nats_url", s.natsURL).Str("store", absPath(srv.StoreDir())).Str("sync", s.opts.sync.String()).
		Str("url_file", absPath(filepath.Join(s.opts.dataDir, node.URLFile))).Bool("auth", user != "").
		Msg("embedded NATS server with JetStream started")
	return nil
}

// natsAuth is the user and password the embedded server requires: those
// of <data>/nats.auth, generated on the first start; none with --no-auth.
func (s *system) natsAuth() (user, password string, err error) {
	authFile := absPath(filepath.Join(s.opts.dataDir, node.AuthFile))
	if s.opts.noAuth {
		s.log.Warn().Msg("--no-auth: the embedded NATS server accepts any client that reaches it, which can read and change every job and session")
		return "", "", nil
	}
	user, password, created, err := node.LocalNATSAuth(s.opts.dataDir)
	if err != nil {
		return "", "", err
	}
	if created {
		s.log.Info().Str("auth_file", authFile).Msg("generated the credentials of the embedded NATS server (mode 0600); commands run from this directory use them")
	}
	return user, password, nil
}

// connectExternal uses the NATS servers named by NATS_URL instead of
// embedding one. nats.url is left alone: every command reads NATS_URL (from
// the environment or .env) before it.
func (s *system) connectExternal(env string) error {
	s.natsURL = node.RedactURL(env)
	if s.opts.listenSet || s.opts.sync != (syncPolicy{}) {
		s.log.Warn().Msg("NATS_URL is set, so no server is embedded: --nats-listen and --sync-interval are ignored")
	}
	nc, _, err := node.ConnectNATS(s.a.getenv, s.opts.dataDir, "jetfleet up")
	if err != nil {
		return err
	}
	if err := s.useConn(nc); err != nil {
		return err
	}
	s.log.Info().Str("nats_url", s.natsURL).Str("connected_to", node.ConnectedURL(nc)).
		Msg("using the NATS server of NATS_URL; none embedded")
	return nil
}

// useConn keeps nc as the system's connection, closed at shutdown.
func (s *system) useConn(nc *nats.Conn) error {
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return fmt.Errorf("jetstream: %w", err)
	}
	nc.SetErrorHandler(node.LogAsyncErrors(s.log))
	s.nc, s.js = nc, js
	s.onStop("nats-connection", nc.Close)
	return nil
}

// startBus provisions the jetfleet streams and one consumer per queue.
// (bus retries what a cluster answers while it settles.)
func (s *system) startBus(ctx context.Context) error {
	cfg, err := bus.ConfigFromEnv(s.a.getenv)
	if err != nil {
		return err
	}
	cfg.Replicas = s.opts.replicas
	if err := bus.ProvisionQueues(ctx, s.js, cfg, s.opts.queues...); err != nil {
		return err
	}
	if err := s.provisionBuckets(ctx, cfg); err != nil {
		return err
	}
	if err := s.waitForReplicas(ctx); err != nil {
		return err
	}
	streams := []string{bus.JobsStream, bus.DLQStream}
	if !cfg.NoHistory {
		streams = append(streams, bus.HistoryStream)
	}
	s.log.Info().Strs("streams", streams).Int("replicas", s.opts.replicas).
		Strs("queues", s.opts.queues).Msg("job bus provisioned")
	return nil
}

// provisionBuckets creates, with --replicas, the buckets that `work`,
// `dispatch` and `serve` processes would otherwise create with one
// replica when they first need them: the job bus's (workers' presence,
// paused queues, unique keys, fleet-wide limits) and, unless
// JETFLEET_IDEMPOTENCY is off, the idempotency records' bucket. Existing
// ones are updated to the replicas asked for. The rest (sessions, paused
// queues, images) the node and its workers open before up says it is up.
func (s *system) provisionBuckets(ctx context.Context, cfg bus.Config) error {
	if err := bus.ProvisionBuckets(ctx, s.js, cfg); err != nil {
		return err
	}
	idem, on, err := node.IdempotencyConfigFromEnv(s.a.getenv)
	if err != nil || !on {
		return err
	}
	idem.Replicas = s.opts.replicas
	return node.ProvisionIdempotency(ctx, s.js, idem)
}

// waitForReplicas waits, for up to a minute, until every replica of JOBS
// and DLQ, and of each queue's consumer, is current. A stream or consumer
// just created or scaled up (R1 to R3) has followers that are still
// catching up, and until they are, losing the leader's node stops it (no
// follower can take over). Past the minute it warns and goes on.
func (s *system) waitForReplicas(ctx context.Context) error {
	if s.opts.replicas < 2 {
		return nil
	}
	deadline := time.Now().Add(time.Minute)
	assets := []string{bus.JobsStream, bus.DLQStream}
	for _, q := range s.opts.queues {
		assets = append(assets, bus.ConsumerName(q))
	}
	for _, name := range assets {
		for {
			state, ok := replicaState(ctx, s.js, name, s.opts.replicas)
			if ok {
				break
			}
			if time.Now().After(deadline) {
				s.log.Warn().Str("asset", name).Str("replicas", state).
					Msg("the replicas are not all current yet; until they are, the cluster cannot lose a node without stopping it")
				break
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(250 * time.Millisecond):
			}
		}
	}
	return nil
}

// replicaState describes the replicas of the stream name, or of the
// consumer name on JOBS when it is a queue's (q-<queue>), and reports
// whether it has a leader and want replicas, all current. (A consumer made
// while JOBS had one replica follows it to three some time after the
// stream has scaled.)
func replicaState(ctx context.Context, js jetstream.JetStream, name string, want int) (string, bool) {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var cluster *jetstream.ClusterInfo
	if strings.HasPrefix(name, bus.ConsumerName("")) {
		cons, err := js.Consumer(c, bus.JobsStream, name)
		if err != nil {
			return err.Error(), false
		}
		cluster = cons.CachedInfo().Cluster
	} else {
		st, err := js.Stream(c, name)
		if err != nil {
			return err.Error(), false
		}
		cluster = st.CachedInfo().Cluster
	}
	if cluster == nil {
		return "no cluster information", false
	}
	ok := cluster.Leader != "" && len(cluster.Replicas) >= want-1
	state := "leader " + cluster.Leader
	for _, r := range cluster.Replicas {
		ok = ok && r.Current && !r.Offline
		state += fmt.Sprintf(", %s current=%v", r.Name, r.Current)
	}
	return state, ok
}
