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
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addr, done := runAgent(t, ctx, h)
	return addr, func() error {
		cancel()
		return agentResult(t, done, "ServeAgent did not return after its context ended")
	}
}

// runAgent runs h.ServeAgent on ctx on a loopback port; done receives its
// result.
func runAgent(t *testing.T, ctx context.Context, h *healthz.Health) (addr string, done <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	result := make(chan error, 1)
	go func() { result <- h.ServeAgent(ctx, ln) }()
	return ln.Addr().String(), result
}

// agentResult waits up to 10s for ServeAgent's result on done.
func agentResult(t *testing.T, done <-chan error, late string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal(late)
		return nil
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
	nats := healthz.Check{Name: "nats", Critical: true, Timeout: checkTimeout, Run: natsCheck(nc, js)}
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

	down := healthz.New(healthz.Config{}, nats, healthz.Check{Name: "sessions", Critical: true, Timeout: checkTimeout, Run: bucketCheck(js, "sessions")})
	addr, _ = startAgent(t, down)
	if got := agentLine(t, addr, ""); !strings.HasPrefix(got, "down#sessions: ") || !strings.Contains(got, "bucket not found") {
		t.Errorf("node with a critical check failing: agent says %q, want down#sessions: ...bucket not found", got)
	}
	if got := healthz.New(healthz.Config{}, nats).AgentStatus(context.Background()); got != "ready up" {
		t.Errorf("without AgentMaxInFlight: %q, want %q (no weight)", got, "ready up")
	}
}

// On SIGTERM the agent says "drain" for as long as Serve drains, through
// the drain delay and the grace, so that HAProxy sets the weight to 0 at
// once: a refused connection (L4CON) would leave the weight unchanged. It
// closes once Serve has returned. Both run on the signal's context, as a
// node runs them.
func TestAgentSaysDrainUntilServeReturns(t *testing.T) {
	h := healthz.New(healthz.Config{})
	ctx, sigterm := context.WithCancel(context.Background())
	defer sigterm()
	d := startDrainServer(t, ctx, h, healthz.DrainOptions{DrainDelay: 500 * time.Millisecond, Grace: 30 * time.Second})
	addr, done := runAgent(t, ctx, h)
	if got := agentLine(t, addr, ""); got != "ready up" {
		t.Fatalf("before the signal: agent says %q, want ready up", got)
	}
	inFlight := d.slow(t) // holds Shutdown in its grace
	sigterm()
	waitFor(t, 5*time.Second, "the drain to begin", h.Draining)
	if got := agentLine(t, addr, "web1\n"); got != "drain" {
		t.Errorf("during the drain delay: agent says %q, want drain", got)
	}
	d.waitLog(t, "healthz: shutting down")
	if got := agentLine(t, addr, ""); got != "drain" {
		t.Errorf("during the grace: agent says %q, want drain", got)
	}
	select {
	case err := <-done:
		t.Fatalf("ServeAgent returned (%v) while Serve was still in its grace", err)
	case <-time.After(100 * time.Millisecond):
	}
	d.unblock()
	if r := <-inFlight; r.code != 200 {
		t.Errorf("the request in flight: %d %s", r.code, r.body)
	}
	if err := <-d.served; err != nil {
		t.Errorf("Serve = %v", err)
	}
	if err := agentResult(t, done, "ServeAgent did not return after Serve did"); err != nil {
		t.Errorf("ServeAgent = %v, want nil", err)
	}
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Error("the agent port still accepts after ServeAgent returned")
	}
}
