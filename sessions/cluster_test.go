package sessions_test

import (
	"context"
	"testing"

	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/sessions"
)

func TestClusterReadsSeeTheWriteMadeThroughAnotherNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	cluster := natstest.StartCluster(t, 3)
	clock := newFakeClock()
	cfg := sessions.Config{Replicas: 3, Now: clock.Now}
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
	if c := st.CachedInfo().Config; c.AllowDirect || c.Replicas != 3 {
		t.Fatalf("bucket AllowDirect=%v Replicas=%d, want false and 3", c.AllowDirect, c.Replicas)
	}
	c := newClient()
	c.run(nodes[0], func(ctx context.Context) { must(t, sessions.Put(ctx, "n", -1)) })
	stale := 0
	for i := range 1000 {
		writer, reader := nodes[i%3], nodes[(i+1)%3]
		c.run(writer, func(ctx context.Context) { must(t, sessions.Put(ctx, "n", i)) })
		c.run(reader, func(ctx context.Context) {
			if got, _ := sessions.GetInt(ctx, "n"); got != i {
				stale++
				t.Errorf("iteration %d: read %d on node %d right after writing %d on node %d", i, got, (i+1)%3, i, i%3)
			}
		})
		if stale > 5 {
			t.Fatal("too many stale reads")
		}
	}
}
