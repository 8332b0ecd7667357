package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/node"
)

type clusterCheck struct {
	N int `json:"n"`
}

func (clusterCheck) Kind() string { return "cluster-check" }

// TestNATSClusterSurvivesKill9 is the issue's cluster test: three `jetfleet
// nats` processes of the built binary form a JetStream cluster; a first
// `jetfleet dispatch` creates R1 streams and `jetfleet up --replicas 3` with
// NATS_URL scales them to R3; jobs are dispatched (from Go and from
// `jetfleet dispatch` with every node in NATS_URL); the node leading JOBS is killed with SIGKILL; and
// dispatch keeps working on the two survivors once they have elected a new
// leader. Every job that was acknowledged, before and after the kill, is
// read back from the survivors, and nothing else is there.
func TestNATSClusterSurvivesKill9(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	ports := natstest.FreePorts(t, 2*3) // one call: two calls could hand out a port twice
	clientPorts, routePorts := ports[:3], ports[3:]
	var urls []string
	for _, p := range clientPorts {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", p))
	}
	nodes := map[string]*proc{}
	for i := range 3 {
		name := fmt.Sprintf("n%d", i+1)
		var routes []string
		for j, p := range routePorts {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", p))
			}
		}
		nodes[name] = startProc(t, dir, testEnv(), "nats", "--name", name,
			"--listen", fmt.Sprintf("127.0.0.1:%d", clientPorts[i]),
			"--store", filepath.Join(dir, name),
			"--cluster-name", "jetfleet-test",
			"--cluster-listen", fmt.Sprintf("127.0.0.1:%d", routePorts[i]),
			"--routes", strings.Join(routes, ","))
	}
	for _, n := range nodes {
		n.WaitFor(t, "JetStream cluster ready", 90*time.Second)
	}

	allURLs := strings.Join(urls, ",")
	_, js := natstest.Connect(t, allURLs)
	acked := map[string]bool{}
	cliDispatch := func(id string) {
		eventually(t, 60*time.Second, "jetfleet dispatch "+id, func() error {
			r := runJF(t, dir, testEnv("NATS_URL="+allURLs), "", "dispatch", "default", "cluster-check", `{"n":-1}`, "--id", id)
			if r.Code != 0 || r.Stdout != id+"\n" {
				return fmt.Errorf("exit %d, stdout %q, stderr %s", r.Code, r.Stdout, r.Stderr)
			}
			return nil
		})
		acked[id] = true
	}

	// A dispatch on the fresh cluster creates R1 streams; `up --replicas 3`
	// with NATS_URL then scales them to R3 and adds the queue's consumer.
	cliDispatch("cli-first")
	up := startProc(t, dir, testEnv("NATS_URL="+allURLs), "up", "--replicas", "3", "--queues", "default", "--no-workers")
	up.WaitFor(t, "jetfleet is up", 90*time.Second)
	if code := up.Signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("up exited %d after SIGTERM", code)
	}
	// Stopped once up, as deploy/README.md says: the buckets `work`,
	// `dispatch` and `serve` would otherwise create with one replica are R3
	// already (a unique key or a limit on an R1 bucket stops while its
	// node is down).
	for _, bucket := range []string{bus.WorkersBucket, bus.PauseBucket, bus.UniqueBucket, bus.LimitsBucket, node.DefaultIdempotencyBucket} {
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatalf("bucket %s after up: %v", bucket, err)
		}
		if st, err := kv.Status(ctx); err != nil || st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas != 3 {
			t.Fatalf("bucket %s after up --replicas 3: %+v, %v; want 3 replicas", bucket, st, err)
		}
	}
	cfg := bus.Config{Replicas: 3}
	d, err := bus.NewDispatcher(js, cfg)
	if err != nil {
		t.Fatal(err)
	}

	dispatch := func(prefix string, n int) {
		for i := range n {
			id := fmt.Sprintf("%s-%d", prefix, i)
			// A failed attempt may or may not have stored the job; the same
			// ID again is absorbed by dedupe, so retrying is safe.
			eventually(t, 60*time.Second, "dispatch "+id, func() error {
				c, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				_, err := d.Dispatch(c, clusterCheck{N: i}, bus.JobID(id))
				return err
			})
			acked[id] = true
		}
	}
	dispatch("before", 200)
	cliDispatch("cli-before")

	info := streamInfo(t, js)
	if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("JOBS is not R3 on three nodes: replicas %d, cluster %+v", info.Config.Replicas, info.Cluster)
	}
	// Killing the leader while a follower is still catching up would stop
	// the stream (`up` waits for this before it says the bus is ready).
	eventually(t, 30*time.Second, "every replica of JOBS current", func() error {
		for _, r := range streamInfo(t, js).Cluster.Replicas {
			if !r.Current {
				return fmt.Errorf("replica %s is not current", r.Name)
			}
		}
		return nil
	})
	if _, err := js.Consumer(ctx, bus.JobsStream, bus.ConsumerName("default")); err != nil {
		t.Fatalf("up did not provision the default queue's consumer: %v", err)
	}
	leader := info.Cluster.Leader
	victim, ok := nodes[leader]
	if !ok {
		t.Fatalf("JOBS leader %q is not one of the nodes", leader)
	}
	// Dispatches run on, as web requests make them (one call each, no
	// deadline of its own), while the leader is killed and the survivors
	// elect another: none fails. A dispatch whose request died with the
	// leader gets no answer; it used to fail after that one attempt (5 s,
	// "no answer in time") and now tries again.
	var mu sync.Mutex
	var wg sync.WaitGroup
	stopDispatching := make(chan struct{})
	start := time.Now()
	for g := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stopDispatching:
					return
				default:
				}
				id := fmt.Sprintf("during-%d-%d", g, i)
				if _, err := d.Dispatch(ctx, clusterCheck{N: i}, bus.JobID(id)); err != nil {
					t.Errorf("dispatch %s, %s after the kill: %v", id, time.Since(start).Round(time.Millisecond), err)
					continue
				}
				mu.Lock()
				acked[id] = true
				mu.Unlock()
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	if err := syscall.Kill(victim.Cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-victim.Done
	delete(nodes, leader)
	t.Logf("killed %s, the JOBS leader, with SIGKILL", leader)
	time.Sleep(8 * time.Second)
	close(stopDispatching)
	wg.Wait()
	t.Logf("%d jobs dispatched by 4 goroutines through the kill and the election", len(acked)-201)
	cliDispatch("cli-after")

	// Every acknowledged job is in JOBS on the survivors, and only those.
	eventually(t, 30*time.Second, "read back every acknowledged job", func() error {
		return checkStored(ctx, js, acked)
	})
	info = streamInfo(t, js)
	if info.Cluster.Leader == leader || info.Config.Replicas != 3 {
		t.Fatalf("after the kill: leader %q (killed %q), replicas %d", info.Cluster.Leader, leader, info.Config.Replicas)
	}

	for name, n := range nodes {
		if code := n.Signal(t, syscall.SIGTERM); code != 0 {
			t.Errorf("node %s exited %d after SIGTERM, want 0", name, code)
		}
	}
}

func streamInfo(t *testing.T, js jetstream.JetStream) *jetstream.StreamInfo {
	t.Helper()
	var info *jetstream.StreamInfo
	eventually(t, 30*time.Second, "JOBS info", func() error {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.Stream(c, bus.JobsStream)
		if err != nil {
			return err
		}
		info, err = s.Info(c)
		return err
	})
	return info
}

// checkStored reads every message of JOBS and compares their job IDs with
// want.
func checkStored(ctx context.Context, js jetstream.JetStream, want map[string]bool) error {
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	s, err := js.Stream(c, bus.JobsStream)
	if err != nil {
		return err
	}
	info, err := s.Info(c)
	if err != nil {
		return err
	}
	if info.State.Msgs != uint64(len(want)) {
		return fmt.Errorf("JOBS holds %d messages, want the %d acknowledged", info.State.Msgs, len(want))
	}
	var got []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(c, seq)
		if err != nil {
			return fmt.Errorf("JOBS seq %d: %w", seq, err)
		}
		got = append(got, m.Header.Get(bus.HeaderMsgID))
	}
	var missing []string
	for id := range want {
		if !slices.Contains(got, id) {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 || len(got) != len(want) {
		return fmt.Errorf("JOBS holds %d jobs; missing %v", len(got), missing)
	}
	return nil
}
