package workers_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/workers"
)

// connectPreferring connects to the cluster through node i first, falling
// over to the others.
func connectPreferring(t *testing.T, c *natstest.Cluster, i int) jetstream.JetStream {
	t.Helper()
	urls := []string{c.Nodes[i].ClientURL()}
	for j, n := range c.Nodes {
		if j != i {
			urls = append(urls, n.ClientURL())
		}
	}
	_, js := natstest.Connect(t, strings.Join(urls, ","), nats.DontRandomize(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	return js
}

// TestClusterNodeLossLosesNoJob: an R3 job bus keeps every job through the
// loss of a NATS node, while jobs are being dispatched, run, failed and
// retried with backoff: every job succeeds (or sits in DLQ) and the queue's
// consumer is left with nothing pending. The node stopped is each queue
// consumer's leader in turn, then a follower.
func TestClusterNodeLossLosesNoJob(t *testing.T) {
	for _, victim := range []string{"consumer leader", "follower"} {
		t.Run(victim, func(t *testing.T) { testNodeLoss(t, victim) })
	}
}

func testNodeLoss(t *testing.T, victim string) {
	c := natstest.StartCluster(t, 3)
	cfg := bus.Config{Replicas: 3, AckWait: 4 * time.Second}
	ctx := context.Background()
	admin := connectPreferring(t, c, 0)
	if err := bus.ProvisionQueues(ctx, admin, cfg, "default"); err != nil {
		t.Fatal(err)
	}
	cons, err := admin.Consumer(ctx, bus.JobsStream, bus.ConsumerName("default"))
	if err != nil {
		t.Fatal(err)
	}
	leader := cons.CachedInfo().Cluster.Leader
	stop := -1
	for i, n := range c.Nodes {
		if (n.Name() == leader) == (victim == "consumer leader") {
			stop = i
			break
		}
	}
	t.Logf("consumer leader %s; stopping %s", leader, c.Configs[stop].Name)

	var mu sync.Mutex
	succeeded := map[string]int{}
	for i := range 2 {
		w := workers.New(connectPreferring(t, c, (stop+i)%3), workers.Config{
			Bus: cfg, Concurrency: 8, Tries: 5, Backoff: []time.Duration{300 * time.Millisecond},
			Middleware: []workers.Middleware{func(next workers.HandlerFunc) workers.HandlerFunc {
				return func(ctx context.Context, j *bus.Job) error {
					err := next(ctx, j)
					if err == nil {
						mu.Lock()
						succeeded[j.ID]++
						mu.Unlock()
					}
					return err
				}
			}},
		})
		workers.RegisterDiagnostics(w)
		start(t, w)
	}

	d, err := bus.NewDispatcher(connectPreferring(t, c, (stop+1)%3), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	began := time.Now()
	for i := 0; time.Since(began) < 8*time.Second; i++ {
		switch time.Since(began).Round(100 * time.Millisecond) {
		case 2 * time.Second:
			if c.Nodes[stop].Running() {
				c.Nodes[stop].Shutdown()
				t.Logf("stopped %s", c.Configs[stop].Name)
			}
		case 5 * time.Second:
			if !c.Nodes[stop].Running() {
				c.Restart(t, stop)
				t.Logf("restarted %s", c.Configs[stop].Name)
			}
		}
		id, err := d.Dispatch(ctx, workers.Fail{Times: 1})
		if err != nil {
			t.Logf("dispatch %d: %v (not accepted)", i, err)
			continue
		}
		ids = append(ids, id)
		time.Sleep(5 * time.Millisecond)
	}

	in, err := bus.NewInspector(admin, cfg)
	if err != nil {
		t.Fatal(err)
	}
	missing := func() []string {
		dead := map[string]bool{}
		if failed, err := in.FailedJobs(ctx, bus.FailedFilter{}); err == nil {
			for _, f := range failed {
				dead[f.ID] = true
			}
		}
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, id := range ids {
			if succeeded[id] == 0 && !dead[id] {
				out = append(out, id)
			}
		}
		return out
	}
	// A job counts as succeeded when its handler returns, before its ack
	// reaches the consumer's leader; an ack sent to the stopped leader is
	// lost, and the job comes back after AckWait, runs again and is acked
	// then. So wait for both: every job run, and the consumer settled.
	var info *jetstream.ConsumerInfo
	settled := func() bool {
		if info, err = cons.Info(ctx); err != nil {
			t.Fatal(err)
		}
		return info.NumAckPending == 0 && info.NumPending == 0
	}
	deadline := time.Now().Add(3*cfg.AckWait + 20*time.Second)
	var allRan time.Time
	for time.Now().Before(deadline) {
		if allRan.IsZero() && len(missing()) == 0 {
			allRan = time.Now()
		}
		if !allRan.IsZero() && settled() {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	settled() // the consumer's state at the end, for the checks below
	t.Logf("%d jobs accepted; every job ran %s after the last dispatch, the consumer settled %s later: pending %d, ack pending %d, ack floor %d, delivered %d, redelivered %d",
		len(ids), allRan.Sub(began.Add(8*time.Second)).Round(time.Millisecond), time.Since(allRan).Round(time.Millisecond),
		info.NumPending, info.NumAckPending, info.AckFloor.Stream, info.Delivered.Stream, info.NumRedelivered)
	if m := missing(); len(m) > 0 {
		t.Errorf("%d of %d accepted jobs neither succeeded nor in DLQ after %s: %v", len(m), len(ids), fmt.Sprint(3*cfg.AckWait+20*time.Second), m[:min(5, len(m))])
	}
	if info.NumAckPending != 0 || info.NumPending != 0 {
		t.Errorf("consumer left with %d pending and %d awaiting ack", info.NumPending, info.NumAckPending)
	}
}
