// Package natstest starts real NATS servers for tests: one embedded node, or
// an in-process JetStream cluster, each on random loopback ports with its
// store in the test's temporary directory. Nothing here is a mock.
package natstest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/freeport"
	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/internal/settle"
)

// Options tunes a test server; the zero value is fine.
type Options struct {
	// MaxPayload overrides the server's 1 MiB default.
	MaxPayload int32
}

// Start runs one JetStream node for the test and stops it at cleanup.
func Start(t testing.TB, opts ...Options) *natsembed.Server {
	t.Helper()
	cfg := natsembed.Config{Listen: "127.0.0.1:-1", StoreDir: t.TempDir()}
	if len(opts) > 0 {
		cfg.MaxPayload = opts[0].MaxPayload
	}
	srv, err := natsembed.Start(cfg)
	if err != nil {
		t.Fatalf("natstest: start server: %v", err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// Connect opens a client connection and a JetStream context to url, closed
// at cleanup.
func Connect(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	opts = append([]nats.Option{nats.Name(t.Name()), nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("natstest: connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}

// Cluster is an in-process JetStream cluster of real servers.
type Cluster struct {
	Nodes []*natsembed.Server
	// Configs holds each node's configuration, to restart a node with Restart.
	Configs []natsembed.Config
}

// StartCluster runs an n-node JetStream cluster and waits until it
// answers JetStream API requests through every node and places a stream
// on all n. Nodes are stopped at cleanup.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := LaunchCluster(t, n)
	for _, s := range c.Nodes {
		if err := s.JetStreamReady(30 * time.Second); err != nil {
			t.Fatalf("natstest: %v", err)
		}
		waitForJetStreamAPI(t, s.ClientURL())
	}
	waitForPlacement(t, c.URLs(), n)
	return c
}

// LaunchCluster starts the nodes of an n-node JetStream cluster and
// returns at once, before they have found each other: for tests of what a
// forming cluster answers. Nodes are stopped at cleanup.
func LaunchCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	clientPorts, routePorts := FreePorts(t, n), FreePorts(t, n)
	c := &Cluster{}
	for i := range n {
		var routes []string
		for j, p := range routePorts {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		c.Configs = append(c.Configs, natsembed.Config{
			Name:          fmt.Sprintf("n%d", i+1),
			Listen:        fmt.Sprintf("127.0.0.1:%d", clientPorts[i]),
			StoreDir:      t.TempDir(),
			ClusterName:   "test",
			ClusterListen: fmt.Sprintf("127.0.0.1:%d", routePorts[i]),
			Routes:        routes,
		})
	}
	for _, cfg := range c.Configs {
		srv, err := natsembed.Start(cfg)
		if err != nil {
			t.Fatalf("natstest: start %s: %v", cfg.Name, err)
		}
		c.Nodes = append(c.Nodes, srv)
	}
	t.Cleanup(func() {
		for _, s := range c.Nodes {
			if s.Running() {
				s.Shutdown()
			}
		}
	})
	return c
}

// waitForPlacement waits until the cluster places a stream on all n
// nodes: its meta leader refuses a placement ("peer offline") until it
// has had each server's first statistics, a moment after it is elected.
// The probe stream is deleted again.
func waitForPlacement(t testing.TB, urls string, n int) {
	t.Helper()
	js, closeConn := dialJetStream(t, urls)
	defer closeConn()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	probe := jetstream.StreamConfig{Name: "NATSTEST_PLACEMENT", Storage: jetstream.MemoryStorage, Replicas: n}
	err := settle.Retry(ctx, 2*time.Second, func(ctx context.Context) error {
		_, err := js.CreateStream(ctx, probe)
		return err
	})
	if err == nil {
		err = settle.Retry(ctx, 2*time.Second, func(ctx context.Context) error {
			if err := js.DeleteStream(ctx, probe.Name); !errors.Is(err, jetstream.ErrStreamNotFound) {
				return err // a try that timed out may have deleted it
			}
			return nil
		})
	}
	if err != nil {
		t.Fatalf("natstest: a stream with %d replicas not placed on the new cluster: %v", n, err)
	}
}

// waitForJetStreamAPI waits until a JetStream API request through url is
// answered: a fresh cluster can have a meta leader yet drop the first
// requests for a few seconds.
func waitForJetStreamAPI(t testing.TB, url string) {
	t.Helper()
	js, closeConn := dialJetStream(t, url)
	defer closeConn()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: JetStream API on %s not answering after 30s: %v", url, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dialJetStream connects to url for the harness's own requests; the
// caller closes the connection.
func dialJetStream(t testing.TB, url string) (jetstream.JetStream, func()) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("natstest: connect %s: %v", url, err)
	}
	js, _ := jetstream.New(nc)
	return js, nc.Close
}

// URLs is every node's client URL, comma separated, as nats.Connect takes it.
func (c *Cluster) URLs() string {
	var urls []string
	for _, s := range c.Nodes {
		urls = append(urls, s.ClientURL())
	}
	return strings.Join(urls, ",")
}

// Restart starts node i again with its original configuration and store.
func (c *Cluster) Restart(t testing.TB, i int) {
	t.Helper()
	srv, err := natsembed.Start(c.Configs[i])
	if err != nil {
		t.Fatalf("natstest: restart %s: %v", c.Configs[i].Name, err)
	}
	c.Nodes[i] = srv
}

// FreePorts returns n distinct loopback TCP ports that were free a moment
// ago, from outside the kernel's ephemeral range (package freeport says
// why). Another process can still take one before it is used; tests that
// need a fixed port accept that small risk.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := freeport.Ports(n)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	return ports
}

// StreamMsgs is how many messages the stream name holds now.
func StreamMsgs(t testing.TB, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatalf("natstest: stream %s: %v", name, err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatalf("natstest: stream %s info: %v", name, err)
	}
	return info.State.Msgs
}
