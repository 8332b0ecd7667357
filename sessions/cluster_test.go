package sessions_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/internal/logtest"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/sessions"
)

func TestClusterReadsSeeTheWriteMadeThroughAnotherNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	cluster := natstest.StartCluster(t, 3)
	clock := newFakeClock()
	log, logged := logtest.New()
	cfg := sessions.Config{Replicas: 3, Now: clock.Now, Logger: log}
	var nodes []*sessions.Manager
	for _, srv := range cluster.Nodes {
		_, js := natstest.Connect(t, srv.ClientURL()) // each manager talks to one server only
		sm, err := sessions.New(js, cfg)
		must(t, err)
		nodes = append(nodes, sm)
	}
	_, js := natstest.Connect(t, cluster.Nodes[0].ClientURL())
	st, err := js.Stream(context.Background(), "KV_sessions")
	must(t, err)
	if c := st.CachedInfo().Config; !c.AllowDirect || c.Replicas != 3 {
		t.Fatalf("bucket AllowDirect=%v Replicas=%d, want true and 3", c.AllowDirect, c.Replicas)
	}
	c := newClient()
	c.run(nodes[0], func(ctx context.Context) { must(t, sessions.Put(ctx, "n", -1)) })
	stale := 0
	for i := range 1000 {
		writer, reader := nodes[i%3], nodes[(i+1)%3]
		if w := c.run(writer, func(ctx context.Context) { must(t, sessions.Put(ctx, "n", i)) }); w.Code != http.StatusOK {
			t.Fatalf("iteration %d: write on node %d: %d %s", i, i%3, w.Code, w.Body)
		}
		c.run(reader, func(ctx context.Context) {
			if got, _ := sessions.GetInt(ctx, "n"); got != i {
				stale++
				t.Errorf("iteration %d: read %d on node %d right after writing %d on node %d (revision cookie %q)", i, got, (i+1)%3, i, i%3, c.rev)
			}
		})
		if stale > 5 {
			for _, e := range logged.Entries() {
				t.Logf("log: %v", e)
			}
			t.Fatal("too many stale reads")
		}
	}
}

// TestANodeNeverLowersTheBucketsReplicas: a node started with the
// default replica count (1) keeps an R3 bucket R3 (before, it scaled it
// down to R1 on start, silently: the sessions then stalled for as long as
// one NATS node was down); one asking for more raises it.
func TestANodeNeverLowersTheBucketsReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	cluster := natstest.StartCluster(t, 3)
	_, js := natstest.Connect(t, cluster.URLs())
	replicas := func(bucket string) int {
		t.Helper()
		st, err := js.Stream(context.Background(), "KV_"+bucket)
		must(t, err)
		return st.CachedInfo().Config.Replicas
	}
	for _, c := range []struct {
		bucket        string
		first, second int
		want          int
	}{
		{"lowered", 3, 0, 3},
		{"lowered-explicitly", 3, 1, 3},
		{"raised", 1, 3, 3},
	} {
		for _, n := range []int{c.first, c.second} {
			sm, err := sessions.New(js, sessions.Config{Bucket: c.bucket, Replicas: n})
			must(t, err)
			sm.Close()
		}
		if got := replicas(c.bucket); got != c.want {
			t.Errorf("bucket %s: R%d after a node with %d, then one with %d; want R%d", c.bucket, got, c.first, c.second, c.want)
		}
	}
}

// TestRequestsWaitOutALeaderElection: when the bucket's leader dies, the
// requests made during the election are slower, not failed: loads and
// saves are made again until a new leader answers. The manager is
// connected through the dying server, so it also waits for its connection
// to move to another.
func TestRequestsWaitOutALeaderElection(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	cluster := natstest.StartCluster(t, 3)
	_, admin := natstest.Connect(t, cluster.Nodes[0].ClientURL())
	_, err := sessions.New(admin, sessions.Config{Replicas: 3})
	must(t, err)
	st, err := admin.Stream(context.Background(), "KV_sessions")
	must(t, err)
	leader := st.CachedInfo().Cluster.Leader
	var urls []string
	for _, n := range cluster.Nodes {
		if n.Name() == leader {
			urls = append([]string{n.ClientURL()}, urls...)
		} else {
			urls = append(urls, n.ClientURL())
		}
	}
	_, js := natstest.Connect(t, strings.Join(urls, ","), nats.DontRandomize())
	sm, err := sessions.New(js, sessions.Config{Replicas: 3})
	must(t, err)
	c := newClient()
	c.run(sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "n", 1)) })
	for _, n := range cluster.Nodes {
		if n.Name() == leader {
			n.Shutdown()
		}
	}
	began := time.Now()
	w := c.run(sm, func(ctx context.Context) {
		n, _ := sessions.GetInt(ctx, "n")
		must(t, sessions.Put(ctx, "n", n+1))
	})
	if w.Code != http.StatusOK {
		t.Fatalf("request during the election: %d %s, want 200", w.Code, w.Body)
	}
	t.Logf("request during the election took %s", time.Since(began).Round(time.Millisecond))
	c.run(sm, func(ctx context.Context) {
		if n, _ := sessions.GetInt(ctx, "n"); n != 2 {
			t.Errorf("after the election n = %d, want 2", n)
		}
	})
}
