package main

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/node"
)

// getStatus is the status of a GET of u with the headers given as
// name, value pairs.
func getStatus(t *testing.T, u string, header ...string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestUpIsClosedByDefault: `up` listens on loopback unless told otherwise
// (HTTP and the embedded NATS server alike) and opens the dashboard
// without credentials there, saying why; on an address other machines can
// reach, the dashboard needs credentials: 404 and a warning without them,
// a refused start with a token under 16 characters, 401 without the token
// and 200 with it.
func TestUpIsClosedByDefault(t *testing.T) {
	help := runJF(t, t.TempDir(), testEnv(), "", "up", "--help")
	for _, want := range []string{`-listen string`, `(default "127.0.0.1:8080")`, `-nats-listen string`, `(default "127.0.0.1:4222")`} {
		if !strings.Contains(help.Stderr, want) {
			t.Errorf("up --help lacks %q:\n%s", want, help.Stderr)
		}
	}

	nats := func() string { return fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(t, 1)[0]) }
	up := startProc(t, t.TempDir(), testEnv(), "up", "--nats-listen", nats(), "--no-workers")
	up.WaitFor(t, "jetfleet is up", 60*time.Second)
	up.WaitFor(t, "web node serving", 60*time.Second) // logged after the dashboard's line
	base := printedURL(t, up)
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Fatalf("up without --listen serves on %s, want 127.0.0.1", base)
	}
	if code := getStatus(t, base+"/jetfleet"); code != http.StatusOK {
		t.Errorf("dashboard on loopback: %d, want 200", code)
	}
	if !strings.Contains(up.Stderr.String(), "dashboard open without credentials: the node listens on loopback only") {
		t.Errorf("up did not say why the dashboard is open:\n%s", up.Stderr)
	}

	port := natstest.FreePorts(t, 1)[0]
	wide := fmt.Sprintf("0.0.0.0:%d", port)
	local := fmt.Sprintf("http://127.0.0.1:%d", port)
	open := startProc(t, t.TempDir(), testEnv(), "up", "--listen", wide, "--nats-listen", nats(), "--no-workers")
	open.WaitFor(t, "jetfleet is up", 60*time.Second)
	open.WaitFor(t, "web node serving", 60*time.Second) // logged after the dashboard's line
	if code := getStatus(t, local+"/jetfleet"); code != http.StatusNotFound {
		t.Errorf("dashboard on %s without credentials: %d, want 404", wide, code)
	}
	if !strings.Contains(open.Stderr.String(), "so the dashboard needs credentials") {
		t.Errorf("up on %s did not warn that the dashboard needs credentials:\n%s", wide, open.Stderr)
	}
	open.Signal(t, syscall.SIGTERM)

	r := runJF(t, t.TempDir(), testEnv("JETFLEET_DASHBOARD_TOKEN=tooShort"), "", "up", "--listen", wide, "--nats-listen", nats(), "--no-workers")
	if r.Code != 1 || !strings.Contains(r.Stderr, "JETFLEET_DASHBOARD_TOKEN) is 8 characters; it must have at least 16") || strings.Contains(r.Stderr, "tooShort") {
		t.Errorf("up with a short token: exit %d, want 1 with a clear error that does not show the token:\n%s", r.Code, r.Stderr)
	}

	const token = "a-long-enough-token-42"
	closed := startProc(t, t.TempDir(), testEnv("JETFLEET_DASHBOARD_TOKEN="+token), "up", "--listen", wide, "--nats-listen", nats(), "--no-workers")
	closed.WaitFor(t, "jetfleet is up", 60*time.Second)
	closed.WaitFor(t, "web node serving", 60*time.Second) // logged after the dashboard's line
	if code := getStatus(t, local+"/jetfleet"); code != http.StatusUnauthorized {
		t.Errorf("dashboard with a token set, none given: %d, want 401", code)
	}
	if code := getStatus(t, local+"/jetfleet", "Authorization", "Bearer "+token); code != http.StatusOK {
		t.Errorf("dashboard with the token: %d, want 200", code)
	}
}

// TestServeIsLoopbackByDefault: `serve` (jetfleet's, and every service's
// through package node) listens on loopback unless --listen says
// otherwise; a node behind a balancer on another machine is started with
// --listen :8080.
func TestServeIsLoopbackByDefault(t *testing.T) {
	help := runJF(t, t.TempDir(), testEnv(), "", "serve", "--help")
	const want = `(default "127.0.0.1:8080")`
	if !strings.Contains(help.Stderr, "-listen string") || !strings.Contains(help.Stderr, want) {
		t.Fatalf("serve --help lacks -listen %s:\n%s", want, help.Stderr)
	}
	addr, err := net.ResolveTCPAddr("tcp", node.DefaultHTTPListen)
	if err != nil {
		t.Fatal(err)
	}
	if !node.LoopbackOnly(addr) {
		t.Errorf("serve's default address %s can be reached from other machines", node.DefaultHTTPListen)
	}
}
