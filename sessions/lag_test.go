package sessions_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/sessions"
)

// TestAFollowerThatLagsIsNotBelieved: a node whose NATS server is a
// follower that was down while the session changed asks for the session as
// soon as that server is back, before it has caught up. The direct get its
// server answers is older than the revision the client has seen, so the
// load asks the stream leader: the client still reads its own write.
func TestAFollowerThatLagsIsNotBelieved(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	cluster := natstest.StartCluster(t, 3)
	var stale atomic.Int64
	cfg := sessions.Config{Replicas: 3, LocalCopy: -1, Observe: func(ev sessions.Event) {
		if ev == sessions.EventStaleCopy {
			stale.Add(1)
		}
	}}
	_, js0 := natstest.Connect(t, cluster.Nodes[0].ClientURL())
	writer, err := sessions.New(js0, cfg)
	must(t, err)
	st, err := js0.Stream(context.Background(), "KV_sessions")
	must(t, err)
	info, err := st.Info(context.Background())
	must(t, err)
	lagger := -1 // a follower, not the server the writer talks to
	for i, n := range cluster.Nodes {
		if i != 0 && n.Name() != info.Cluster.Leader {
			lagger = i
		}
	}
	c := newClient()
	c.run(writer, func(ctx context.Context) { must(t, sessions.Put(ctx, "n", 0)) })
	for round := 1; round <= 20; round++ {
		cluster.Nodes[lagger].Shutdown()
		for j := range 50 { // other sessions' writes: the lagger has more to catch up on
			other := newClient()
			other.run(writer, func(ctx context.Context) { must(t, sessions.Put(ctx, "j", j)) })
		}
		c.run(writer, func(ctx context.Context) { must(t, sessions.Put(ctx, "n", round)) })
		cluster.Restart(t, lagger)
		_, js := natstest.Connect(t, cluster.Nodes[lagger].ClientURL())
		reader, err := sessions.New(js, cfg)
		must(t, err)
		c.run(reader, func(ctx context.Context) {
			if n, _ := sessions.GetInt(ctx, "n"); n != round {
				t.Errorf("round %d: read n = %d through the lagging follower", round, n)
			}
		})
	}
	t.Logf("%d loads met a stale copy and asked the leader", stale.Load())
}

// TestAReplicaThatLagsIsNotBelieved: a mirror of the bucket that joins its
// direct gets (MirrorDirect) and stopped taking writes (it is full) is a
// replica that lags for good: about half the direct gets of the node on
// its server are answered by it. Every read still sees the write just made
// through another node, and the loads that met the stale replica say so
// (EventStaleCopy).
func TestAReplicaThatLagsIsNotBelieved(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	cluster := natstest.StartCluster(t, 3)
	var stale atomic.Int64
	cfg := sessions.Config{Replicas: 3, LocalCopy: -1, Observe: func(ev sessions.Event) {
		if ev == sessions.EventStaleCopy {
			stale.Add(1)
		}
	}}
	_, js0 := natstest.Connect(t, cluster.Nodes[0].ClientURL())
	writer, err := sessions.New(js0, cfg)
	must(t, err)
	c := newClient()
	c.run(writer, func(ctx context.Context) { must(t, sessions.Put(ctx, "n", 0)) })
	ctx := context.Background()
	lag, err := js0.CreateStream(ctx, jetstream.StreamConfig{Name: "LAGGING", Replicas: 1,
		Mirror: &jetstream.StreamSource{Name: "KV_sessions"}, MirrorDirect: true,
		MaxMsgs: 1, Discard: jetstream.DiscardNew})
	must(t, err)
	var info *jetstream.StreamInfo
	for info == nil || info.State.Msgs < 1 { // the mirror has the first write, and room for no other
		time.Sleep(10 * time.Millisecond)
		info, err = lag.Info(ctx)
		must(t, err)
	}
	firstRev := info.State.LastSeq
	var reader *sessions.Manager
	for _, n := range cluster.Nodes {
		if n.Name() == info.Cluster.Leader {
			_, js := natstest.Connect(t, n.ClientURL())
			reader, err = sessions.New(js, cfg)
			must(t, err)
		}
	}
	for i := 1; i <= 40; i++ {
		c.run(writer, func(ctx context.Context) { must(t, sessions.Put(ctx, "n", i)) })
		c.run(reader, func(ctx context.Context) {
			if n, _ := sessions.GetInt(ctx, "n"); n != i {
				t.Errorf("read n = %d right after writing %d through another node", n, i)
			}
		})
	}
	info, err = lag.Info(ctx)
	must(t, err)
	if info.State.LastSeq != firstRev {
		t.Fatalf("the mirror moved from revision %d to %d: it does not lag", firstRev, info.State.LastSeq)
	}
	if stale.Load() == 0 {
		t.Error("no load met the lagging mirror: it never answered a direct get")
	}
	t.Logf("%d loads (of 80, both nodes) met the lagging mirror and asked the leader", stale.Load())
}
