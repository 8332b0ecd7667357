package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/internal/placeholder"
	"github.com/jetfleet/jetfleet/node"
)

// defaultNATSListen is the client address of an embedded server when the
// user names none. JETFLEET_NATS_DEFAULT_LISTEN replaces it; it stays a
// default: when its port is taken, a free port is used instead, loudly.
const defaultNATSListen = "127.0.0.1:4222"

// natsDefaultListen is the address an embedded server tries first when no
// listen flag was given.
func natsDefaultListen(getenv func(string) string) string {
	return cmp.Or(getenv("JETFLEET_NATS_DEFAULT_LISTEN"), defaultNATSListen)
}

// syncPolicy is how often JetStream file storage is flushed to disk.
type syncPolicy struct {
	interval time.Duration // 0: the server default (2 minutes)
	always   bool          // fsync every write
}

// parseSyncPolicy reads the --sync-interval flag: empty for the server's
// default, a duration such as 1s or 2m, or "always".
func parseSyncPolicy(v string) (syncPolicy, error) {
	switch v = strings.TrimSpace(v); v {
	case "":
		return syncPolicy{}, nil
	case "always":
		return syncPolicy{always: true}, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return syncPolicy{}, fmt.Errorf("--sync-interval %q is neither a positive duration (1s, 2m) nor \"always\"", v)
	}
	return syncPolicy{interval: d}, nil
}

func (p syncPolicy) String() string {
	switch {
	case p.always:
		return "always (fsync every write)"
	case p.interval > 0:
		return "every " + p.interval.String()
	}
	return "every 2m0s (server default)"
}

// chooseListen decides the client address of an embedded server. When the
// user chose addr (explicit) and it cannot be bound, that is an error naming
// flagName. A default address that cannot be bound falls back to a free port
// on the same host, and fellBack says so, so the caller can warn.
func chooseListen(addr string, explicit bool, flagName string) (listen string, fellBack bool, err error) {
	host, port, err := natsembed.SplitHostPort(addr)
	if err != nil {
		return "", false, fmt.Errorf("--%s: %w", flagName, err)
	}
	if port <= 0 { // any free port: nothing to check
		return addr, false, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(port)))
	if err == nil {
		ln.Close()
		return addr, false, nil
	}
	if explicit {
		return "", false, fmt.Errorf("cannot listen for NATS clients on %s (--%s): %w; another process (often a NATS server) holds it: choose another address with --%s, or stop that process", addr, flagName, err, flagName)
	}
	return net.JoinHostPort(host, "0"), true, nil
}

// warnFallback says loudly that the default client address was taken: a
// WARN log line and a plain line on stderr for whoever reads the terminal.
func warnFallback(a *app, wanted, url, flagName string) {
	a.log.Warn().Str("wanted", wanted).Str("nats_url", url).
		Msgf("%s is taken (another NATS server?); the embedded NATS server listens on a free port instead", wanted)
	fmt.Fprintf(a.stderr, "jetfleet: WARNING: %s is taken (another NATS server?), so the embedded NATS server listens on %s instead.\n"+
		"jetfleet: commands run from this directory find it through the data directory's %s; others need NATS_URL=%s (or pass --%s).\n",
		wanted, url, node.URLFile, url, flagName)
}

// absPath is path made absolute for log lines, or path when that fails.
func absPath(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// runNATS is `jetfleet nats`: one embedded NATS server with JetStream, alone
// or as a node of a cluster, until ctx ends.
//
// A single node (no --cluster-listen) records its client URL in
// <data>/nats.url, as `up` does, so commands run from the same directory find
// it. A cluster node does not: three nodes started from one directory would
// overwrite each other, and clients of a cluster should list every node in
// NATS_URL; the node logs its URL for that.
func runNATS(ctx context.Context, a *app, args []string) error {
	fs := newFlagSet(a, "nats", "nats [--name n1] [--listen 127.0.0.1:4222] [--store DIR] "+
		"[--cluster-listen HOST:PORT --routes nats://HOST:PORT,...] [--cluster-name NAME] [--config FILE] [--sync-interval 2m|always] [--monitor-listen 8222]")
	name := fs.String("name", "", "server name, unique in the cluster (required with --cluster-listen)")
	listen := fs.String("listen", natsDefaultListen(a.getenv), "client address host:port; when not given and taken, a free port is used with a warning")
	store := fs.String("store", "", "JetStream store directory (default <data>/nats)")
	dataDir := fs.String("data", a.dataDir, "data directory: holds the default store and, for a single node, nats.url")
	clusterName := fs.String("cluster-name", "", "cluster name (default jetfleet)")
	clusterListen := fs.String("cluster-listen", "", "route address host:port for the other nodes; empty runs a single node")
	routes := fs.String("routes", "", "comma-separated route URLs of the other nodes (nats://127.0.0.1:6223,...)")
	configFile := fs.String("config", "", "a nats-server configuration file; flags given explicitly override it")
	syncFlag := fs.String("sync-interval", "", "fsync interval of the file store (e.g. 1s, 2m) or \"always\"; default the server's 2m")
	monitor := fs.String("monitor-listen", "", "serve the NATS monitoring endpoint (/varz, /jsz: what KEDA's nats-jetstream scaler reads) there, without authentication; a bare port or :port is loopback; off when empty")
	rest, err := node.ParseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := node.NoArgs(fs, rest); err != nil {
		return err
	}
	set := node.FlagsSet(fs)
	sync, err := parseSyncPolicy(*syncFlag)
	if err != nil {
		return node.UsageError(fs, "%v", err)
	}
	cfg := natsembed.Config{
		Name:          *name,
		ClusterName:   *clusterName,
		ClusterListen: *clusterListen,
		Routes:        node.SplitList(*routes),
		ConfigFile:    *configFile,
		SyncInterval:  sync.interval,
		SyncAlways:    sync.always,
		Logger:        a.log.With().Str("component", "nats-server").Logger(),
	}
	if *monitor != "" {
		cfg.MonitorListen = node.LoopbackDefault(*monitor)
	}
	if cfg.ConfigFile != "" {
		if err := refusePlaceholders(a.getenv, cfg.ConfigFile); err != nil {
			return err
		}
	}
	if len(cfg.Routes) > 0 && cfg.ClusterListen == "" {
		return errors.New("--routes needs --cluster-listen: a node joins a cluster through its own route address")
	}
	// With a configuration file, only what the user passed overrides it.
	fellBack := false
	if cfg.ConfigFile == "" || set["listen"] {
		if cfg.Listen, fellBack, err = chooseListen(*listen, set["listen"], "listen"); err != nil {
			return err
		}
	}
	if *store != "" {
		cfg.StoreDir = *store
	} else if cfg.ConfigFile == "" {
		cfg.StoreDir = filepath.Join(*dataDir, "nats")
	}

	srv, err := natsembed.Start(cfg)
	if err != nil {
		return fmt.Errorf("start NATS: %w", err)
	}
	defer func() {
		srv.Shutdown()
		a.log.Info().Str("name", srv.Name()).Msg("NATS server stopped")
	}()
	url := srv.ClientURL()
	if fellBack {
		warnFallback(a, *listen, url, "listen")
	}
	ev := a.log.Info().Str("name", srv.Name()).Str("nats_url", url).Str("store", absPath(srv.StoreDir())).Str("sync", sync.String())
	if m := srv.MonitorURL(); m != "" {
		ev.Str("monitor_url", m)
	}
	if addr, ok := clusterAddr(srv); ok {
		ev.Str("cluster_listen", addr).Strs("routes", cfg.Routes).Msg("NATS node started; waiting for the cluster")
		go waitForCluster(ctx, a, srv)
		go watchStore(ctx, a, srv)
	} else {
		if err := srv.JetStreamReady(30 * time.Second); err != nil {
			return err
		}
		if err := node.WriteNATSURL(*dataDir, url); err != nil {
			return err
		}
		ev.Str("url_file", absPath(filepath.Join(*dataDir, node.URLFile))).Msg("NATS server ready with JetStream")
		go watchStore(ctx, a, srv)
	}
	<-ctx.Done()
	return nil
}

// watchStore restarts a single node's embedded server once its store's
// filesystem, which filled up, has space again (natsembed.WatchStore), until
// ctx ends. A cluster node is not watched; it says so.
func watchStore(ctx context.Context, a *app, srv *natsembed.Server) {
	err := srv.WatchStore(ctx, natsembed.StoreWatch{Logger: a.log.With().Str("component", "nats-store").Logger()})
	if errors.Is(err, natsembed.ErrClustered) {
		a.log.Info().Msg("the JetStream store is not watched on a cluster node: if its filesystem fills up, nats-server disables JetStream here and the other nodes carry on; restart this node once it has space again")
		return
	}
	if err != nil {
		a.log.Error().Err(err).Msg("the JetStream store is not watched: restart this node once a full store filesystem has space again")
	}
}

// clusterAddr is the node's bound route address, if it is clustered.
func clusterAddr(srv *natsembed.Server) (string, bool) {
	addr := srv.ClusterAddr()
	if addr == nil {
		return "", false
	}
	return addr.String(), true
}

// waitForCluster logs once the node's JetStream cluster has a meta leader,
// or warns every minute while it has none (the other nodes are not up yet).
func waitForCluster(ctx context.Context, a *app, srv *natsembed.Server) {
	for ctx.Err() == nil {
		if err := srv.JetStreamReady(time.Minute); err == nil {
			a.log.Info().Str("name", srv.Name()).Msg("JetStream cluster ready: it has a meta leader")
			return
		}
		if ctx.Err() == nil {
			a.log.Warn().Str("name", srv.Name()).Msg("JetStream cluster still has no meta leader; are the other nodes running and their routes right?")
		}
	}
}

// refusePlaceholders refuses a configuration file, or the passwords it
// reads from the environment (deploy/nats), still holding deploy/'s
// example secrets.
func refusePlaceholders(getenv func(string) string, configFile string) error {
	for _, name := range []string{"NATS_PASSWORD", "NATS_SYS_PASSWORD"} {
		if err := placeholder.CheckSetting(name, getenv(name)); err != nil {
			return err
		}
	}
	return placeholder.CheckFile(configFile)
}
