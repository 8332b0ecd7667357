package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/kedatest"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/workers"
)

// The scaler below reads a NATS cluster's monitoring endpoints the way
// KEDA's nats-jetstream scaler does (kedacore/keda v2.21.0,
// pkg/scalers/nats_jetstream_scaler.go): /jsz?acc=<account>&consumers=true&config=true
// on the configured endpoint; when meta_cluster.cluster_size > 1, /varz
// for connect_urls, and for each URL's host the same monitoring port: its
// /varz for server_name and its /jsz, until the node that is the
// consumer's cluster.leader; the metric is that node's num_pending +
// num_ack_pending. The tests then run KEDA's own scaler too (kedaScales),
// built from the separate tools module tools/keda.

type kedaJSZ struct {
	Accounts []struct {
		ID, Name string
		Streams  []struct {
			Name      string `json:"name"`
			Consumers []struct {
				Name          string `json:"name"`
				NumAckPending int    `json:"num_ack_pending"`
				NumPending    int    `json:"num_pending"`
				Cluster       struct {
					Leader string `json:"leader"`
				} `json:"cluster"`
			} `json:"consumer_detail"`
		} `json:"stream_detail"`
	} `json:"account_details"`
	MetaCluster struct {
		ClusterSize int `json:"cluster_size"`
	} `json:"meta_cluster"`
}

type kedaVarz struct {
	ConnectURLs []string `json:"connect_urls"`
	ServerName  string   `json:"server_name"`
}

func kedaGet(u string, out any) error {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

// consumer finds account/stream/consumer in a /jsz answer: its leader and
// its lag (num_pending + num_ack_pending).
func (j kedaJSZ) consumer(account, stream, name string) (leader string, lag int, ok bool) {
	for _, a := range j.Accounts {
		if a.ID != account && a.Name != account {
			continue
		}
		for _, s := range a.Streams {
			for _, c := range s.Consumers {
				if s.Name == stream && c.Name == name {
					return c.Cluster.Leader, c.NumPending + c.NumAckPending, true
				}
			}
		}
	}
	return "", 0, false
}

// kedaLag is the scaler's metric for endpoint (host:port of a monitoring
// endpoint), and the name of the server it was read from.
func kedaLag(endpoint, account, stream, consumer string) (lag int, from string, err error) {
	q := url.Values{"acc": {account}, "consumers": {"true"}, "config": {"true"}}
	jszURL := func(host string) string { return "http://" + host + "/jsz?" + q.Encode() }
	var first kedaJSZ
	if err := kedaGet(jszURL(endpoint), &first); err != nil {
		return 0, "", err
	}
	if first.MetaCluster.ClusterSize <= 1 {
		_, lag, ok := first.consumer(account, stream, consumer)
		if !ok {
			return 0, "", fmt.Errorf("consumer %s not found", consumer)
		}
		return lag, endpoint, nil
	}
	_, port, _ := net.SplitHostPort(endpoint)
	var varz kedaVarz
	if err := kedaGet("http://"+endpoint+"/varz", &varz); err != nil {
		return 0, "", err
	}
	for _, cu := range varz.ConnectURLs {
		host := net.JoinHostPort(strings.Split(cu, ":")[0], port)
		var node kedaVarz
		if err := kedaGet("http://"+host+"/varz", &node); err != nil {
			return 0, "", err
		}
		var jsz kedaJSZ
		if err := kedaGet(jszURL(host), &jsz); err != nil {
			return 0, "", err
		}
		if leader, lag, ok := jsz.consumer(account, stream, consumer); ok && leader == node.ServerName {
			return lag, node.ServerName, nil
		}
	}
	return 0, "", fmt.Errorf("leader node not found for consumer %s", consumer)
}

// TestKEDAReadsQueueDepthFromTheConsumersLeader starts a 3-node `jetfleet
// nats` cluster with --monitor-listen, each node on a loopback address of
// its own (127.0.0.1-3) and the same monitoring port, as pods of a
// StatefulSet are, provisions R3 streams, dispatches 7 jobs and holds 2 of
// them in flight; with the consumer's leadership moved off the node KEDA
// is pointed at, the scaler's steps find the leader and read 7 = ready 5 +
// in flight 2, what `queue stats` shows.
func TestKEDAReadsQueueDepthFromTheConsumersLeader(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	hosts := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	ports := natstest.FreePorts(t, 2*3) // one call: two calls could hand out a port twice
	clientPorts, routePorts := ports[:3], ports[3:]
	monitor := commonFreePort(t, hosts, ports)
	var urls []string
	for i, p := range clientPorts {
		urls = append(urls, fmt.Sprintf("nats://%s:%d", hosts[i], p))
	}
	var nodes []*proc
	for i := range 3 {
		var routes []string
		for j, p := range routePorts {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://%s:%d", hosts[j], p))
			}
		}
		name := fmt.Sprintf("n%d", i+1)
		n := startProc(t, dir, testEnv(), "nats", "--name", name, "--store", filepath.Join(dir, name),
			"--listen", fmt.Sprintf("%s:%d", hosts[i], clientPorts[i]),
			"--cluster-listen", fmt.Sprintf("%s:%d", hosts[i], routePorts[i]), "--routes", strings.Join(routes, ","),
			"--monitor-listen", fmt.Sprintf("%s:%d", hosts[i], monitor))
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		n.WaitFor(t, "JetStream cluster ready", 90*time.Second)
		if !strings.Contains(n.Stderr.String(), `"monitor_url":"http://127.0.0.`) {
			t.Errorf("%s logs no monitor_url:\n%s", n.Name, n.Stderr)
		}
	}
	_, js := natstest.Connect(t, strings.Join(urls, ","))
	eventually(t, 60*time.Second, "R3 streams and the default queue", func() error {
		return bus.ProvisionQueues(ctx, js, bus.Config{Replicas: 3}, "default")
	})
	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for range 7 {
		if _, err := d.Dispatch(ctx, workers.Noop{}); err != nil {
			t.Fatal(err)
		}
	}
	holdInFlight(t, js, 2)
	leader := moveConsumerLeaderOff(t, js, "n1")

	var lag int
	var from string
	eventually(t, 30*time.Second, "the scaler's reading", func() error {
		lag, from, err = kedaLag(fmt.Sprintf("%s:%d", hosts[0], monitor), "$G", bus.JobsStream, bus.ConsumerName("default"))
		if err == nil && lag != 7 {
			err = fmt.Errorf("lag %d from %s", lag, from)
		}
		return err
	})
	t.Logf("the scaler read %d from %s, the consumer's leader", lag, from)
	if from != leader {
		t.Errorf("the scaler read %s, want the consumer's leader %s", from, leader)
	}
	kedaScales(t, fmt.Sprintf("%s:%d", hosts[0], monitor), 7)
	r := runJF(t, dir, testEnv("NATS_URL="+strings.Join(urls, ",")), "", "queue", "stats", "--json")
	var stats struct {
		Queues []bus.QueueStats `json:"queues"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &stats); err != nil || len(stats.Queues) != 1 {
		t.Fatalf("queue stats --json: %v\n%s%s", err, r.Stdout, r.Stderr)
	}
	if q := stats.Queues[0]; q.Ready != 5 || q.InFlight != 2 || int(q.Ready+q.InFlight) != lag {
		t.Errorf("queue stats: ready %d in flight %d; the scaler read %d", q.Ready, q.InFlight, lag)
	}
}

// commonFreePort is a TCP port free on every host, none of taken.
func commonFreePort(t *testing.T, hosts []string, taken []int) int {
	t.Helper()
	for range 50 {
		port := natstest.FreePorts(t, 1)[0]
		free := !slices.Contains(taken, port)
		for _, h := range hosts {
			ln, err := net.Listen("tcp", net.JoinHostPort(h, fmt.Sprint(port)))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if free {
			return port
		}
	}
	t.Fatalf("no port free on all of %v", hosts)
	return 0
}

// holdInFlight fetches n jobs of the default queue and never acks them,
// as running jobs are.
func holdInFlight(t *testing.T, js jetstream.JetStream, n int) {
	t.Helper()
	c, err := js.Consumer(context.Background(), bus.JobsStream, bus.ConsumerName("default"))
	if err != nil {
		t.Fatal(err)
	}
	// A consumer made a moment ago may have no leader answering pulls yet
	// ("no responders"): ask again until it has, keeping what came.
	got := 0
	eventually(t, 30*time.Second, fmt.Sprintf("%d jobs held in flight", n), func() error {
		batch, err := c.Fetch(n-got, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			return err
		}
		for range batch.Messages() {
			got++
		}
		if got < n {
			return fmt.Errorf("fetched %d jobs, want %d (%v)", got, n, batch.Error())
		}
		return nil
	})
}

// moveConsumerLeaderOff steps the queue consumer's leader down until it is
// not server, and returns the new leader.
func moveConsumerLeaderOff(t *testing.T, js jetstream.JetStream, server string) string {
	t.Helper()
	ctx := context.Background()
	var leader string
	eventually(t, 60*time.Second, "the consumer's leader off "+server, func() error {
		c, err := js.Consumer(ctx, bus.JobsStream, bus.ConsumerName("default"))
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil || info.Cluster == nil {
			return fmt.Errorf("consumer info: %v", err)
		}
		if leader = info.Cluster.Leader; leader != server && leader != "" {
			return nil
		}
		_, err = js.Conn().Request("$JS.API.CONSUMER.LEADER.STEPDOWN."+bus.JobsStream+"."+bus.ConsumerName("default"), nil, 5*time.Second)
		return fmt.Errorf("leader is %q (stepped down: %v)", leader, err)
	})
	return leader
}

// TestKEDAOnASingleNode: `jetfleet nats --monitor-listen 0` (a bare port:
// loopback, here a free one) serves /jsz, where the scaler reads a
// single node's queue depth directly.
func TestKEDAOnASingleNode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(t, 1)[0])
	n := startProc(t, dir, testEnv(), "nats", "--listen", addr, "--monitor-listen", "0")
	n.WaitFor(t, "NATS server ready", 30*time.Second)
	var line struct {
		MonitorURL string `json:"monitor_url"`
	}
	for l := range strings.SplitSeq(n.Stderr.String(), "\n") {
		if strings.Contains(l, "NATS server ready") {
			_ = json.Unmarshal([]byte(l), &line)
		}
	}
	endpoint, ok := strings.CutPrefix(line.MonitorURL, "http://127.0.0.1:")
	if !ok {
		t.Fatalf("monitor_url %q: want loopback", line.MonitorURL)
	}
	_, js := natstest.Connect(t, readURLFile(t, dir))
	ctx := context.Background()
	if err := bus.ProvisionQueues(ctx, js, bus.Config{}, "default"); err != nil {
		t.Fatal(err)
	}
	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := d.Dispatch(ctx, workers.Noop{}); err != nil {
			t.Fatal(err)
		}
	}
	lag, _, err := kedaLag("127.0.0.1:"+endpoint, "$G", bus.JobsStream, bus.ConsumerName("default"))
	if err != nil || lag != 3 {
		t.Errorf("the scaler read %d (%v), want 3", lag, err)
	}
}

// kedaScales runs KEDA's own nats-jetstream scaler, built from the
// default queue's ScaledObject in deploy/k8s (read with KEDA's types, no
// unknown field allowed), against endpoint, and checks that it reads
// want (ready + in flight) twice, the second time from the leader it
// found, would activate the workers and targets the workers'
// concurrency per pod. It is a subtest: it skips, saying why, only when
// KEDA's scaler cannot be built (.ci/run builds it).
func kedaScales(t *testing.T, endpoint string, want float64) {
	t.Run("KEDA's own scaler", func(t *testing.T) {
		bin := kedatest.Binary(t)
		file := filepath.Join("..", "..", "deploy", "k8s", "keda-nats-jetstream.yaml")
		readings, err := kedatest.Scale(bin, file, "jetfleet-worker-default", endpoint, "$G")
		if err != nil {
			t.Fatal(err)
		}
		if len(readings) != 2 {
			t.Fatalf("KEDA's scaler answered %d times, want 2: %+v", len(readings), readings)
		}
		for i, r := range readings {
			if r.Value != want || !r.Active || r.Target != 16 {
				t.Errorf("KEDA's scaler, reading %d: %+v; want value %v, active, target 16", i+1, r, want)
			}
		}
		t.Logf("KEDA %s's nats-jetstream scaler: %+v", kedatest.Version, readings)
	})
}
