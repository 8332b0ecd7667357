package healthz_test

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/healthz"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// startAgent runs h.ServeAgent on a loopback port; stopping it returns
// ServeAgent's result.
func startAgent(t *testing.T, h *healthz.Health) (addr string, stop func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.ServeAgent(ctx, ln) }()
	t.Cleanup(cancel)
	return ln.Addr().String(), func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Fatal("ServeAgent did not return after its context ended")
			return nil
		}
	}
}

// agentLine connects as HAProxy does, optionally sends its agent-send
// string, and reads the one line the agent answers.
func agentLine(t *testing.T, addr, send string) string {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	must(t, err)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if send != "" {
		_, err = conn.Write([]byte(send))
		must(t, err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("agent on %s: read %q: %v", addr, line, err)
	}
	return strings.TrimSuffix(line, "\n")
}

func TestAgentAnswersReadyDrainDown(t *testing.T) {
	ns := natstest.Start(t)
	nc, js := natstest.Connect(t, ns.ClientURL())
	nats := healthz.Check{Name: "nats", Critical: true, Run: natsCheck(nc, js)}
	h := healthz.New(healthz.Config{AgentMaxInFlight: 4}, nats)
	d := startDrainServer(t, context.Background(), h, healthz.DrainOptions{})
	addr, stop := startAgent(t, h)

	if got := agentLine(t, addr, ""); got != "ready up 100%" {
		t.Errorf("idle node: agent says %q, want %q", got, "ready up 100%")
	}
	d.slow(t)
	if got := agentLine(t, addr, "web1\n"); got != "ready up 75%" {
		t.Errorf("one request in flight of 4: agent says %q, want %q", got, "ready up 75%")
	}
	d.unblock()
	h.Drain()
	if got := agentLine(t, addr, ""); got != "drain" {
		t.Errorf("draining node: agent says %q, want drain", got)
	}
	if err := stop(); err != nil {
		t.Errorf("ServeAgent = %v, want nil when its context ends", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("the agent port still accepts after ServeAgent returned")
	}

	down := healthz.New(healthz.Config{}, nats, healthz.Check{Name: "sessions", Critical: true, Run: bucketCheck(js, "sessions")})
	addr, _ = startAgent(t, down)
	if got := agentLine(t, addr, ""); !strings.HasPrefix(got, "down#sessions: ") || !strings.Contains(got, "bucket not found") {
		t.Errorf("node with a critical check failing: agent says %q, want down#sessions: ...bucket not found", got)
	}
	if got := healthz.New(healthz.Config{}, nats).AgentStatus(context.Background()); got != "ready up" {
		t.Errorf("without AgentMaxInFlight: %q, want %q (no weight)", got, "ready up")
	}
}
