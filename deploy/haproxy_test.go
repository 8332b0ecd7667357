package deploy_test

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const haproxyCfg = "haproxy/haproxy.cfg"

// haproxyEnv fills in the template's variables for nodes on loopback.
func haproxyEnv(nodes []*node, lbPort, statsPort int, socket string) []string {
	env := []string{
		fmt.Sprintf("JETFLEET_LB_BIND=127.0.0.1:%d", lbPort),
		fmt.Sprintf("JETFLEET_LB_STATS_BIND=127.0.0.1:%d", statsPort),
		"JETFLEET_LB_SOCKET=" + socket,
	}
	for i, n := range nodes {
		env = append(env, fmt.Sprintf("WEB%d=%s", i+1, n.addr), fmt.Sprintf("WEB%d_AGENT_PORT=%d", i+1, n.agentPort))
	}
	return env
}

// The shipped haproxy.cfg passes `haproxy -c` once its template variables
// are set, with no warning, and fails without them: a server address is
// never silently left empty.
func TestHAProxyConfigCheck(t *testing.T) {
	t.Parallel()
	bin := tool(t, "haproxy", "haproxy")
	sock := filepath.Join(t.TempDir(), "admin.sock")
	env := []string{
		"WEB1=127.0.0.1:8181", "WEB2=127.0.0.1:8182", "WEB3=127.0.0.1:8183",
		"WEB1_AGENT_PORT=9181", "WEB2_AGENT_PORT=9182", "WEB3_AGENT_PORT=9183",
		"JETFLEET_LB_BIND=127.0.0.1:8180", "JETFLEET_LB_STATS_BIND=127.0.0.1:8190", "JETFLEET_LB_SOCKET=" + sock,
	}
	out, err := run(t, 30*time.Second, env, bin, "-c", "-f", haproxyCfg)
	if err != nil || !strings.Contains(out, "Configuration file is valid") {
		t.Fatalf("haproxy -c -f %s: %v\n%s", haproxyCfg, err, out)
	}
	if strings.Contains(out, "[WARNING]") || strings.Contains(out, "[ALERT]") {
		t.Fatalf("haproxy -c -f %s warns:\n%s", haproxyCfg, out)
	}
	// The production defaults of the optional variables are valid too.
	out, err = run(t, 30*time.Second, env[:3], bin, "-c", "-f", haproxyCfg)
	if err != nil {
		t.Fatalf("haproxy -c with only WEB1..WEB3 set: %v\n%s", err, out)
	}
	out, err = run(t, 30*time.Second, append([]string{"WEB1="}, env[1:]...), bin, "-c", "-f", haproxyCfg)
	if err == nil || !strings.Contains(out, "'server' expects <name> and <addr>") {
		t.Fatalf("haproxy -c with WEB1 empty: want the server line refused, got err %v\n%s", err, out)
	}
}

// haproxyStats asks HAProxy's runtime API for the state of each server of
// the jetfleet_web backend: its status (UP, DOWN, DRAIN, ...) and weight.
func haproxyStats(socket string) (map[string][2]string, error) {
	rows, err := haproxyServers(socket)
	states := map[string][2]string{}
	for name, row := range rows {
		states[name] = [2]string{row["status"], row["weight"]}
	}
	return states, err
}

// haproxyServers is the "show stat" row of each server of the jetfleet_web
// backend, by column name.
func haproxyServers(socket string) (map[string]map[string]string, error) {
	c, err := net.DialTimeout("unix", socket, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("show stat\n")); err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var cols []string
	rows := map[string]map[string]string{}
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "# ") {
			cols = strings.Split(strings.TrimPrefix(line, "# "), ",")
			continue
		}
		f := strings.Split(line, ",")
		if len(cols) == 0 || len(f) < len(cols) || f[0] != "jetfleet_web" || !strings.HasPrefix(f[1], "web") {
			continue
		}
		row := map[string]string{}
		for i, name := range cols {
			row[name] = f[i]
		}
		rows[f[1]] = row
	}
	return rows, sc.Err()
}

// startHAProxy runs the shipped haproxy.cfg for real in front of nodes and
// returns the balancer's URL and the runtime API socket.
func startHAProxy(t *testing.T, bin string, nodes []*node) (string, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "admin.sock")
	lbPort, statsPort := freePort(t), freePort(t)
	cmd := exec.Command(bin, "-db", "-f", haproxyCfg)
	cmd.Env = append(os.Environ(), haproxyEnv(nodes, lbPort, statsPort, sock)...)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := haproxyStats(sock)
		up := 0
		for _, s := range st {
			if s[0] == "UP" {
				up++
			}
		}
		if err == nil && up == len(nodes) {
			break
		}
		select {
		case <-exited:
			t.Fatalf("haproxy exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("HAProxy did not see all %d nodes UP within 20s: %v %v\n%s", len(nodes), st, err, out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", lbPort), sock
}

// HAProxy running the shipped haproxy.cfg in front of three real web nodes
// (healthz's /up, agent port and drain, as package node's `serve` runs them):
//   - round robin reaches every node;
//   - a GET whose connection closes with no response is retried on another
//     node, and so is a POST with an Idempotency-Key (the node replays a
//     repeat); a POST without one is not (it may have been processed): 502.
//     Likewise a 503 (the node could not reach NATS);
//   - a node that drains (SIGTERM) leaves the pool before its listener
//     closes, and no request fails meanwhile;
//   - a node that dies (kill -9) costs no request, GET or POST: connection
//     failures are retried on another node, and it is marked DOWN.
func TestHAProxyBalancesDrainsAndRetries(t *testing.T) {
	bin := tool(t, "haproxy", "haproxy")
	const drainDelay = 4 * time.Second
	var emptyOnce atomic.Int64
	nodes := []*node{
		startNode(t, "web1", drainDelay, &emptyOnce),
		startNode(t, "web2", drainDelay, &emptyOnce),
		startNode(t, "web3", drainDelay, &emptyOnce),
	}
	lb, sock := startHAProxy(t, bin, nodes)
	client := &http.Client{Timeout: 15 * time.Second}

	t.Run("round robin", func(t *testing.T) {
		seen := map[string]int{}
		for range 30 {
			code, body, err := get(client, http.MethodGet, lb+"/")
			if err != nil || code != 200 {
				t.Fatalf("GET through the balancer: %d %v", code, err)
			}
			seen[body]++
		}
		for _, n := range nodes {
			if seen[n.name] < 5 {
				t.Errorf("%s got %d of 30 requests, want about 10: %v", n.name, seen[n.name], seen)
			}
		}
	})

	t.Run("retries safe requests only", func(t *testing.T) {
		emptyOnce.Store(0)
		code, _, err := get(client, http.MethodGet, lb+"/empty-once")
		if err != nil || code != 200 || emptyOnce.Load() != 2 {
			t.Errorf("GET after an empty response: got %d %v after %d attempts, want 200 after 2", code, err, emptyOnce.Load())
		}
		// On a fresh client connection HAProxy answers 502. (On a
		// keep-alive connection that served earlier requests it closes the
		// connection instead, as a server would: the client decides.)
		emptyOnce.Store(0)
		fresh := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		code, _, err = get(fresh, http.MethodPost, lb+"/empty-once")
		if err != nil || code != http.StatusBadGateway || emptyOnce.Load() != 1 {
			t.Errorf("POST after an empty response: got %d %v after %d attempts, want 502 after 1 (never resent)", code, err, emptyOnce.Load())
		}
		emptyOnce.Store(0)
		code, _, err = get(fresh, http.MethodPost, lb+"/unavailable-once")
		if err != nil || code != http.StatusServiceUnavailable || emptyOnce.Load() != 1 {
			t.Errorf("POST answered 503: got %d %v after %d attempts, want 503 after 1 (never resent)", code, err, emptyOnce.Load())
		}
	})

	t.Run("retries keyed requests on another node", func(t *testing.T) {
		for i, path := range []string{"/empty-once", "/unavailable-once"} {
			emptyOnce.Store(0)
			before := hitsOf(nodes)
			fresh := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			code, body, err := get(fresh, http.MethodPost, lb+path, fmt.Sprintf("order-key-%d", i))
			if err != nil || code != 200 || emptyOnce.Load() != 2 {
				t.Fatalf("keyed POST %s: got %d %v after %d attempts, want 200 after 2", path, code, err, emptyOnce.Load())
			}
			var hit []string
			for j, n := range nodes {
				if n.hits.Load() != before[j] {
					hit = append(hit, n.name)
				}
			}
			if len(hit) != 2 || !slices.Contains(hit, body) {
				t.Errorf("keyed POST %s: nodes hit %v, answered by %q; want two nodes, the second answering", path, hit, body)
			}
		}
	})

	t.Run("drain loses no request", func(t *testing.T) {
		web2 := nodes[1]
		var sent, answered, failed atomic.Int64
		var firstFailure atomic.Value
		stop := make(chan struct{})
		var wg sync.WaitGroup
		stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
		defer stopLoad() // also when the test fails early
		for range 4 {
			wg.Go(func() {
				c := &http.Client{Timeout: 15 * time.Second}
				for {
					select {
					case <-stop:
						return
					default:
					}
					method := http.MethodGet
					if sent.Add(1)%3 == 0 {
						method = http.MethodPost
					}
					code, _, err := get(c, method, lb+"/")
					if err != nil || code != 200 {
						failed.Add(1)
						firstFailure.CompareAndSwap(nil, fmt.Sprintf("%s: %d %v", method, code, err))
					}
					answered.Add(1)
					time.Sleep(5 * time.Millisecond)
				}
			})
		}
		waitUntil(t, 10*time.Second, "the load to run", func() bool { return answered.Load() >= 20 })
		began := time.Now()
		web2.stop() // SIGTERM: /up 503 and agent "drain" at once
		var outAfter time.Duration
		for outAfter == 0 && time.Since(began) < drainDelay {
			if st, err := haproxyStats(sock); err == nil && (st["web2"][0] != "UP" || st["web2"][1] == "0") {
				outAfter = time.Since(began)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := <-web2.done; err != nil {
			t.Errorf("web2's drain: %v", err)
		}
		closed := answered.Load()
		waitUntil(t, 10*time.Second, "requests after web2's listener closed", func() bool { return answered.Load() >= closed+40 })
		stopLoad()
		if outAfter == 0 {
			t.Errorf("HAProxy still sent traffic to web2 (UP, weight > 0) when its drain delay of %s ended", drainDelay)
		} else {
			t.Logf("web2 left the pool %s after SIGTERM (drain delay %s)", outAfter.Round(time.Millisecond), drainDelay)
		}
		if failed.Load() != 0 {
			t.Errorf("%d of %d requests failed during the drain; first: %v", failed.Load(), sent.Load(), firstFailure.Load())
		}
		t.Logf("%d requests during the drain, %d failed", sent.Load(), failed.Load())
	})

	t.Run("crash loses no request", func(t *testing.T) {
		web3 := nodes[2]
		if rows, err := haproxyServers(sock); err == nil {
			t.Logf("web3 before the crash: idle %s, safe %s, used %s connections", rows["web3"]["idle_conn_cur"], rows["web3"]["safe_conn_cur"], rows["web3"]["used_conn_cur"])
		}
		web3.crash()
		// HAProxy keeps idle connections to each server for reuse; it drops
		// web3's once it sees them closed.
		waitUntil(t, 10*time.Second, "HAProxy to drop its idle connections to web3", func() bool {
			rows, err := haproxyServers(sock)
			return err == nil && rows["web3"]["idle_conn_cur"] == "0" && rows["web3"]["safe_conn_cur"] == "0"
		})
		for i := range 30 {
			method := http.MethodGet
			if i%3 == 0 {
				method = http.MethodPost
			}
			code, body, err := get(client, method, lb+"/")
			if err != nil || code != 200 || body != "web1" {
				t.Fatalf("%s %d after web3 died: %d %q %v, want 200 from web1", method, i, code, body, err)
			}
		}
		waitUntil(t, 10*time.Second, "HAProxy to mark web3 DOWN", func() bool {
			st, err := haproxyStats(sock)
			return err == nil && strings.HasPrefix(st["web3"][0], "DOWN")
		})
	})
}

// hitsOf is each node's count of requests.
func hitsOf(nodes []*node) []int64 {
	out := make([]int64, len(nodes))
	for i, n := range nodes {
		out[i] = n.hits.Load()
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for a process's stdout and stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
