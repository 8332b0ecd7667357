package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/healthz"
	"github.com/jetfleet/jetfleet/internal/freeport"
)

// tool returns the path of a command, looking on PATH and in /usr/sbin and
// /usr/bin, or skips the test naming the Debian package that provides it.
func tool(t testing.TB, name, debianPackage string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	t.Skipf("%s is not installed (Debian: apt-get install %s)", name, debianPackage)
	return ""
}

// run runs a command with a timeout and returns its combined output.
func run(t testing.TB, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// readFile reads a file of the deploy directory (the test's working
// directory).
func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// rewrite replaces each old string of pairs with its new one, and fails the
// test unless each old string occurs exactly once: a change to a shipped
// file that a test does not follow must fail, not test something else.
func rewrite(t testing.TB, name, text string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if n := strings.Count(text, pairs[i]); n != 1 {
			t.Fatalf("%s: %q occurs %d times, want exactly 1", name, pairs[i], n)
		}
		text = strings.Replace(text, pairs[i], pairs[i+1], 1)
	}
	return text
}

func freePort(t testing.TB) int {
	t.Helper()
	p, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// node is a real web node as package node's `serve` builds one from the
// healthz package: /up, /livez and /readyz, the drain on shutdown, and an
// HAProxy agent-check port. Its other routes answer with the node's name.
type node struct {
	name      string
	addr      string // host:port of HTTP
	agentPort int
	hits      atomic.Int64
	health    *healthz.Health
	srv       *http.Server
	stop      context.CancelFunc // starts the drain, as SIGTERM does
	done      chan error         // the drain's result
}

// startNode runs a node until the test ends. drain is its drain delay.
// emptyOnce, when set, is shared by nodes: the first request to
// /empty-once among them gets its connection closed with no response, the
// first to /unavailable-once a 503.
func startNode(t testing.TB, name string, drain time.Duration, emptyOnce *atomic.Int64) *node {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	aln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &node{
		name: name, addr: ln.Addr().String(), agentPort: aln.Addr().(*net.TCPAddr).Port,
		health: healthz.New(healthz.Config{CacheFor: -1}), done: make(chan error, 1),
	}
	mux := http.NewServeMux()
	n.health.Routes(mux)
	mux.HandleFunc("/empty-once", func(w http.ResponseWriter, r *http.Request) {
		n.hits.Add(1)
		io.Copy(io.Discard, r.Body)
		if emptyOnce != nil && emptyOnce.Add(1) == 1 {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		fmt.Fprintln(w, n.name)
	})
	mux.HandleFunc("/unavailable-once", func(w http.ResponseWriter, r *http.Request) {
		n.hits.Add(1)
		io.Copy(io.Discard, r.Body)
		if emptyOnce != nil && emptyOnce.Add(1) == 1 {
			http.Error(w, "NATS out of reach", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, n.name)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		n.hits.Add(1)
		io.Copy(io.Discard, r.Body)
		fmt.Fprintln(w, n.name)
	})
	n.srv = &http.Server{Handler: n.health.Track(mux), ReadHeaderTimeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	go func() {
		n.done <- n.health.Serve(ctx, n.srv, ln, healthz.DrainOptions{DrainDelay: drain, Grace: 2 * time.Second})
	}()
	go n.health.ServeAgent(ctx, aln)
	t.Cleanup(func() {
		cancel()
		n.srv.Close()
	})
	return n
}

// crash stops the node the way kill -9 does: every listener and connection
// closes at once, nothing drains.
func (n *node) crash() {
	n.srv.Close()
	n.stop()
}

// get sends a request and returns the status code and body, or an error.
// A POST has a small body and, when key is given, an Idempotency-Key.
func get(client *http.Client, method, url string, key ...string) (int, string, error) {
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("name=x")
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return 0, "", err
	}
	for _, k := range key {
		req.Header.Set("Idempotency-Key", k)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(bytes.TrimSpace(b)), err
}

// waitUntil polls cond every 50ms until it holds or timeout passes.
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func writeFile(t testing.TB, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
