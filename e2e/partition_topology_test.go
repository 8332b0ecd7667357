//go:build partition

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/netfault"
	"github.com/jetfleet/jetfleet/internal/proctest"
)

// ptNode is one `jetfleet nats` process of the partition topology.
type ptNode struct {
	name       string
	clientAddr string // the server's own client address (admin only)
	proxy      *netfault.Proxy
	proc       *proctest.Proc
}

// ptTopology is three `jetfleet nats` processes whose every route, and
// every client's link, goes through a netfault.Proxy:
//
//	routes[{i, j}] is node i's route to node j (i dials the proxy, the
//	proxy dials j's route port); a link between i and j is both proxies.
//	nodes[i].proxy is the link of node i's clients.
//
// Each node advertises a netfault.Sink as its cluster address and
// advertises no client URLs, so neither gossip nor a client can reach a
// node around the proxies.
type ptTopology struct {
	nodes  []*ptNode
	routes map[[2]int]*netfault.Proxy
}

func buildJetfleet(t *testing.T) string {
	t.Helper()
	bin, cleanup, err := proctest.Build("../cmd/jetfleet", "jetfleet")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	return bin
}

// startTopology starts the three nodes behind their proxies and waits until
// JetStream answers through each.
func startTopology(t *testing.T, bin string) *ptTopology {
	t.Helper()
	const n = 3
	ports := natstest.FreePorts(t, 2*n) // one call: two calls could hand out a port twice
	clientPorts, routePorts := ports[:n], ports[n:]
	tp := &ptTopology{routes: map[[2]int]*netfault.Proxy{}}
	for i := range n {
		for j := range n {
			if i != j {
				tp.routes[[2]int{i, j}] = newProxy(t, fmt.Sprintf("127.0.0.1:%d", routePorts[j]))
			}
		}
	}
	dir := t.TempDir()
	for i := range n {
		sink, err := netfault.NewSink()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sink.Close() })
		var routes []string
		for j := range n {
			if j != i {
				routes = append(routes, fmt.Sprintf("%q", "nats://"+tp.routes[[2]int{i, j}].Addr()))
			}
		}
		name := fmt.Sprintf("n%d", i+1)
		conf := filepath.Join(dir, name+".conf")
		body := fmt.Sprintf(`server_name: %s
listen: "127.0.0.1:%d"
ping_interval: "1s"
ping_max: 3
jetstream { store_dir: %q }
cluster {
  name: partition
  listen: "127.0.0.1:%d"
  advertise: %q
  no_advertise: true
  routes: [%s]
}
`, name, clientPorts[i], filepath.Join(dir, name), routePorts[i], sink.Addr(), strings.Join(routes, ", "))
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		addr := fmt.Sprintf("127.0.0.1:%d", clientPorts[i])
		node := &ptNode{name: name, clientAddr: addr, proxy: newProxy(t, addr)}
		node.proc = proctest.Start(t, bin, dir, proctest.Env(), "nats", "--config", conf, "--data", filepath.Join(dir, name+"-data"))
		tp.nodes = append(tp.nodes, node)
	}
	for _, node := range tp.nodes {
		node.proc.WaitFor(t, "JetStream cluster ready", 60*time.Second)
	}
	return tp
}

func newProxy(t *testing.T, target string) *netfault.Proxy {
	t.Helper()
	p, err := netfault.New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// link is both directions of the route between nodes i and j.
func (tp *ptTopology) link(i, j int) []*netfault.Proxy {
	return []*netfault.Proxy{tp.routes[[2]int{i, j}], tp.routes[[2]int{j, i}]}
}

// isolate cuts node i's routes to every other node; its clients still
// reach it.
func (tp *ptTopology) isolate(i int) {
	for j := range tp.nodes {
		if j != i {
			for _, p := range tp.link(i, j) {
				p.Cut()
			}
		}
	}
}

// healAll ends every fault on every link.
func (tp *ptTopology) healAll() {
	for _, p := range tp.allProxies() {
		p.Slow(0)
		p.Lossy(0)
		p.Heal()
	}
}

func (tp *ptTopology) allProxies() []*netfault.Proxy {
	var ps []*netfault.Proxy
	for _, p := range tp.routes {
		ps = append(ps, p)
	}
	for _, n := range tp.nodes {
		ps = append(ps, n.proxy)
	}
	return ps
}

// connect opens a client connection to node i through its client proxy,
// and only there: discovered servers are ignored, so the client stays on
// its side of a partition and keeps trying there, as a web node or worker
// configured with one nearby server does. It pings every second, so a cut
// client link is noticed within seconds.
func (tp *ptTopology) connect(t *testing.T, i int, name string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return natstest.Connect(t, "nats://"+tp.nodes[i].proxy.Addr(), nats.Name(name), nats.IgnoreDiscoveredServers(),
		nats.PingInterval(time.Second), nats.MaxPingsOutstanding(3), nats.Timeout(2*time.Second),
		nats.ReconnectWait(200*time.Millisecond), nats.ReconnectBufSize(-1))
}

// admin connects to every node directly, around the proxies: for setup,
// leader look-ups while the cluster is whole, and the checks after heal.
func (tp *ptTopology) admin(t *testing.T) jetstream.JetStream {
	t.Helper()
	var urls []string
	for _, n := range tp.nodes {
		urls = append(urls, "nats://"+n.clientAddr)
	}
	_, js := natstest.Connect(t, strings.Join(urls, ","), nats.IgnoreDiscoveredServers())
	return js
}

// index is the position of the node named name, or -1.
func (tp *ptTopology) index(name string) int {
	for i, n := range tp.nodes {
		if n.name == name {
			return i
		}
	}
	return -1
}

// streamLeader is the node leading stream and whether all its replicas are
// current, as the cluster reports it through admin.
func streamLeader(ctx context.Context, js jetstream.JetStream, stream string) (leader string, allCurrent bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return "", false, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return "", false, err
	}
	if info.Cluster == nil {
		return "", false, fmt.Errorf("stream %s has no cluster info", stream)
	}
	allCurrent = len(info.Cluster.Replicas) == 2
	for _, r := range info.Cluster.Replicas {
		allCurrent = allCurrent && r.Current && !r.Offline
	}
	return info.Cluster.Leader, allCurrent, nil
}

// waitWhole waits until every stream has a leader and all its replicas
// are current (the cluster healed), and returns how long that took.
func waitWhole(t *testing.T, js jetstream.JetStream, streams ...string) time.Duration {
	t.Helper()
	start := time.Now()
	for _, s := range streams {
		for {
			leader, current, err := streamLeader(context.Background(), js, s)
			if err == nil && leader != "" && current {
				break
			}
			if time.Since(start) > 90*time.Second {
				t.Fatalf("stream %s not whole 90s after heal: leader %q, replicas current %v, %v", s, leader, current, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return time.Since(start)
}
