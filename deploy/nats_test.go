package deploy_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/freeport"
	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/sessions"
)

var natsConfs = []string{"nats/n1.conf", "nats/n2.conf", "nats/n3.conf"}

// setNATSSecrets sets the variables the configs read from the environment.
func setNATSSecrets(t *testing.T) (app, sys string) {
	app, sys = "app-secret-for-tests", "sys-secret-for-tests"
	t.Setenv("NATS_PASSWORD", app)
	t.Setenv("NATS_SYS_PASSWORD", sys)
	return app, sys
}

// The three configs, loaded by nats-server's own parser, describe one
// cluster: names n1..n3, the same cluster, routes to all three with the
// route user, a system account, password users only (no no_auth_user), and
// JetStream with limits. They differ in server_name only.
func TestNATSConfigsParse(t *testing.T) {
	app, sys := setNATSSecrets(t)
	for i, path := range natsConfs {
		opts, err := server.ProcessConfigFile(path)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if want := fmt.Sprintf("n%d", i+1); opts.ServerName != want {
			t.Errorf("%s: server_name %q, want %q", path, opts.ServerName, want)
		}
		if opts.Cluster.Name != "jetfleet" || opts.Cluster.Port != 6222 || len(opts.Routes) != 3 || opts.Cluster.Username != "route" {
			t.Errorf("%s: cluster %q port %d with %d routes and route user %q, want jetfleet, 6222, 3, route",
				path, opts.Cluster.Name, opts.Cluster.Port, len(opts.Routes), opts.Cluster.Username)
		}
		for _, r := range opts.Routes {
			if p, _ := r.User.Password(); r.User.Username() != opts.Cluster.Username || p != opts.Cluster.Password {
				t.Errorf("%s: route %s does not carry the cluster's route credentials", path, r.Redacted())
			}
		}
		if opts.SystemAccount != "SYS" || opts.NoAuthUser != "" {
			t.Errorf("%s: system account %q, no_auth_user %q; want SYS and none", path, opts.SystemAccount, opts.NoAuthUser)
		}
		users := map[string]string{}
		for _, u := range opts.Users {
			if u.Password == "" {
				t.Errorf("%s: user %q has no password", path, u.Username)
			}
			users[u.Username] = u.Account.Name + ":" + u.Password
		}
		if users["jetfleet"] != "APP:"+app || users["sys"] != "SYS:"+sys || len(users) != 2 {
			t.Errorf("%s: users %v, want jetfleet in APP and sys in SYS with the environment's passwords", path, users)
		}
		if !opts.JetStream || opts.JetStreamMaxMemory <= 0 || opts.JetStreamMaxStore <= 0 || opts.StoreDir == "" {
			t.Errorf("%s: JetStream %v, max memory %d, max store %d, store %q: want it on, with limits and a store",
				path, opts.JetStream, opts.JetStreamMaxMemory, opts.JetStreamMaxStore, opts.StoreDir)
		}
		if opts.Port != 4222 || opts.HTTPHost != "127.0.0.1" || opts.HTTPPort != 8222 {
			t.Errorf("%s: clients on %d, monitoring on %s:%d; want 4222 and 127.0.0.1:8222", path, opts.Port, opts.HTTPHost, opts.HTTPPort)
		}
	}

	n1 := significantLines(readFile(t, natsConfs[0]))
	for _, path := range natsConfs[1:] {
		other := significantLines(readFile(t, path))
		if len(other) != len(n1) {
			t.Fatalf("%s has %d setting lines, n1.conf %d: the files must differ in server_name only", path, len(other), len(n1))
		}
		for i := range n1 {
			if n1[i] != other[i] && !strings.HasPrefix(n1[i], "server_name:") {
				t.Errorf("%s differs from n1.conf beyond server_name: %q vs %q", path, other[i], n1[i])
			}
		}
	}

	t.Run("a missing secret is named", func(t *testing.T) {
		os.Unsetenv("NATS_PASSWORD") // t.Setenv above restores it
		_, err := server.ProcessConfigFile(natsConfs[0])
		if err == nil || !strings.Contains(err.Error(), "NATS_PASSWORD") {
			t.Fatalf("without NATS_PASSWORD: %v, want an error naming it", err)
		}
	})
}

// significantLines are a config's lines without comments and blank lines.
func significantLines(text string) []string {
	var out []string
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

// renderNATS writes node i's config with loopback ports and a store in dir,
// as deploy/cluster/run.sh does.
func renderNATS(t *testing.T, i int, clients, monitors, routes []int, dir string) string {
	t.Helper()
	text := rewrite(t, natsConfs[i], readFile(t, natsConfs[i]),
		"listen: 0.0.0.0:4222", fmt.Sprintf("listen: 127.0.0.1:%d", clients[i]),
		"http: 127.0.0.1:8222", fmt.Sprintf("http: 127.0.0.1:%d", monitors[i]),
		"listen: 0.0.0.0:6222", fmt.Sprintf("listen: 127.0.0.1:%d", routes[i]),
		"@nats-1:6222", fmt.Sprintf("@127.0.0.1:%d", routes[0]),
		"@nats-2:6222", fmt.Sprintf("@127.0.0.1:%d", routes[1]),
		"@nats-3:6222", fmt.Sprintf("@127.0.0.1:%d", routes[2]),
		"store_dir: /var/lib/jetfleet/nats", fmt.Sprintf("store_dir: %q", filepath.Join(dir, fmt.Sprintf("n%d", i+1))),
	)
	path := filepath.Join(dir, fmt.Sprintf("n%d.conf", i+1))
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The three shipped configs, with only their addresses moved to loopback
// ports, start a real 3-node JetStream cluster (through natsembed, as
// `jetfleet nats --config` does) that refuses anonymous clients and wrong
// passwords, lets the application user in with the account's JetStream
// limits, holds jetfleet's streams and session bucket as R3, and answers the
// system account's server ping from all three nodes.
func TestNATSClusterFromConfigs(t *testing.T) {
	app, sys := setNATSSecrets(t)
	dir := t.TempDir()
	ports := freePorts(t, 9)
	clients, monitors, routes := ports[:3], ports[3:6], ports[6:]
	var nodes []*natsembed.Server
	for i := range natsConfs {
		srv, err := natsembed.Start(natsembed.Config{ConfigFile: renderNATS(t, i, clients, monitors, routes, dir)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Shutdown)
		nodes = append(nodes, srv)
	}
	for _, n := range nodes {
		if err := n.JetStreamReady(60 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.ClientURL())
	}
	url := strings.Join(urls, ",")

	if nc, err := nats.Connect(url, nats.MaxReconnects(0)); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		if nc != nil {
			nc.Close()
		}
		t.Errorf("anonymous client: %v, want Authorization Violation", err)
	}
	if nc, err := nats.Connect(url, nats.UserInfo("jetfleet", "wrong")); err == nil || !strings.Contains(err.Error(), "Authorization Violation") {
		if nc != nil {
			nc.Close()
		}
		t.Errorf("wrong password: %v, want Authorization Violation", err)
	}

	nc, err := nats.Connect(url, nats.UserInfo("jetfleet", app))
	if err != nil {
		t.Fatalf("application user: %v", err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var info *jetstream.AccountInfo
	waitUntil(t, 30*time.Second, "the JetStream API to answer", func() bool {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		info, err = js.AccountInfo(c)
		return err == nil
	})
	if l := info.Limits; l.MaxStreams != 64 || l.MaxConsumers != 1024 || l.MaxMemory != 256<<20 || l.MaxStore != 10<<30 {
		t.Errorf("APP account limits %+v, want 64 streams, 1024 consumers, 256MB memory, 10GB file", l)
	}

	// R3, as the configs' comment says: JOBS and DLQ, and the session bucket.
	// A cluster that has just formed can answer "insufficient resources"
	// for an R3 asset until every peer has caught up with the meta leader
	// (as `jetfleet up` does, retry for a while).
	retry := func(what string, f func() error) {
		t.Helper()
		var err error
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			if err = f(); err == nil {
				return
			}
			t.Logf("%s: %v (retrying)", what, err)
		}
		t.Fatalf("%s: %v", what, err)
	}
	retry("JOBS and DLQ as R3", func() error {
		return bus.EnsureQueues(ctx, js, bus.Config{Replicas: 3}, "high", "default")
	})
	retry("the session bucket as R3", func() error {
		_, err := sessions.NewContext(ctx, js, sessions.Config{Replicas: 3})
		return err
	})
	for _, name := range []string{bus.JobsStream, bus.DLQStream, "KV_sessions"} {
		waitUntil(t, 30*time.Second, name+" with 3 current replicas", func() bool {
			s, err := js.Stream(ctx, name)
			if err != nil {
				return false
			}
			ci := s.CachedInfo()
			current := 0
			for _, p := range ci.Cluster.Replicas {
				if p.Current {
					current++
				}
			}
			return ci.Config.Replicas == 3 && ci.Cluster.Leader != "" && current == 2
		})
	}

	snc, err := nats.Connect(url, nats.UserInfo("sys", sys))
	if err != nil {
		t.Fatalf("system user: %v", err)
	}
	defer snc.Close()
	inbox := nats.NewInbox()
	sub, err := snc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	if err := snc.PublishRequest("$SYS.REQ.SERVER.PING", inbox, nil); err != nil {
		t.Fatal(err)
	}
	var names []string
	for range 3 {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("$SYS.REQ.SERVER.PING: %d answers (%v), then %v", len(names), names, err)
		}
		var ping struct {
			Server struct {
				Name string `json:"name"`
			} `json:"server"`
		}
		if err := jsonUnmarshal(m.Data, &ping); err != nil {
			t.Fatal(err)
		}
		names = append(names, ping.Server.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"n1", "n2", "n3"}) {
		t.Errorf("servers answering the system ping: %v, want n1 n2 n3", names)
	}

	for i, p := range monitors {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", p))
		if err != nil {
			t.Fatalf("n%d monitoring: %v", i+1, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("n%d /healthz: %d", i+1, resp.StatusCode)
		}
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports, err := freeport.Ports(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}
