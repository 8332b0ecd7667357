package deploy_test

import (
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const clusterScript = "cluster/run.sh"

// shellcheck finds nothing in deploy/cluster/run.sh (`task cluster`).
func TestClusterScriptShellcheck(t *testing.T) {
	t.Parallel()
	bin := tool(t, "shellcheck", "shellcheck")
	out, err := run(t, time.Minute, nil, bin, "--shell=bash", "--severity=style", clusterScript)
	if err != nil {
		t.Fatalf("shellcheck %s: %v\n%s", clusterScript, err, out)
	}
}

// `task cluster` for real, on free loopback ports: run.sh start brings up 3
// NATS nodes, a MariaDB primary and replica, migrate, 3 web nodes, 2
// workers and HAProxy from the shipped files and prints the balancer's URL;
// the balancer answers /up; a web node killed with SIGKILL costs no request
// through the balancer and comes back with run.sh restart; run.sh stop
// stops every process and run.sh down removes the state. The web nodes and
// workers run the service's binary (the catalog demo), NATS jetfleet's.
// Skipped with -short (it builds both binaries, static as deploy/Dockerfile
// builds them, and runs 11 processes for about 30s).
func TestClusterScript(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the whole topology takes about 30s")
	}
	for _, req := range [][2]string{{"haproxy", "haproxy"}, {"mariadbd", "mariadb-server"},
		{"mariadb-install-db", "mariadb-server"}, {"mariadb", "mariadb-client"}, {"envsubst", "gettext-base"},
		{"curl", "curl"}, {"go", "golang"}} {
		tool(t, req[0], req[1])
	}
	// A short state path: MariaDB's unix socket lives in it.
	state, err := os.MkdirTemp("", "jfc")
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(state) // run.sh creates it
	// The binaries as deploy/Dockerfile builds them: static.
	bins := t.TempDir()
	bin, appBin := filepath.Join(bins, "jetfleet"), filepath.Join(bins, "catalog")
	for _, b := range []struct{ out, pkg string }{{"jetfleet", "./cmd/jetfleet"}, {"catalog", "./examples/catalog"}} {
		benv, bargs := dockerfileBuild(t, b.out, b.pkg)
		bargs = append(bargs, "-o", filepath.Join(bins, b.out), "."+b.pkg)
		if out, err := run(t, 10*time.Minute, benv, "go", bargs...); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(bargs, " "), err, out)
		}
		if !isStatic(t, filepath.Join(bins, b.out)) {
			t.Fatalf("go %s built a dynamically linked binary; the Dockerfile's image has no C library", strings.Join(bargs, " "))
		}
	}
	p := freePorts(t, 18)
	env := []string{
		"JETFLEET_CLUSTER_DIR=" + state,
		"JETFLEET_BIN=" + bin,
		"JETFLEET_APP_BIN=" + appBin,
		fmt.Sprintf("JETFLEET_CLUSTER_NATS_PORTS=%d %d %d", p[0], p[1], p[2]),
		fmt.Sprintf("JETFLEET_CLUSTER_ROUTE_PORTS=%d %d %d", p[3], p[4], p[5]),
		fmt.Sprintf("JETFLEET_CLUSTER_NATS_MONITOR_PORTS=%d %d %d", p[6], p[7], p[8]),
		fmt.Sprintf("JETFLEET_CLUSTER_DB_PORTS=%d %d", p[9], p[10]),
		fmt.Sprintf("JETFLEET_CLUSTER_WEB_PORTS=%d %d %d", p[11], p[12], p[13]),
		fmt.Sprintf("JETFLEET_CLUSTER_AGENT_PORTS=%d %d %d", p[14], p[15], p[16]),
		fmt.Sprintf("JETFLEET_CLUSTER_LB_PORT=%d", p[17]),
		fmt.Sprintf("JETFLEET_CLUSTER_LB_STATS_PORT=%d", freePort(t)),
		"JETFLEET_CLUSTER_DRAIN_DELAY=2s",
		"JETFLEET_CLUSTER_GRACE=5s",
	}
	script := func(timeout time.Duration, args ...string) (string, error) {
		return run(t, timeout, env, "bash", append([]string{clusterScript}, args...)...)
	}
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := filepath.Glob(filepath.Join(state, "logs", "*.log"))
			for _, l := range logs {
				b, _ := os.ReadFile(l)
				if len(b) > 3000 {
					b = b[len(b)-3000:]
				}
				t.Logf("--- %s (end)\n%s", l, b)
			}
		}
		if out, err := script(3*time.Minute, "down"); err != nil {
			t.Errorf("run.sh down: %v\n%s", err, out)
		}
	})

	out, err := script(5*time.Minute, "start")
	lb := fmt.Sprintf("http://127.0.0.1:%d/", p[17])
	if err != nil || !strings.Contains(out, "jetfleet cluster is up. Balancer (HAProxy): "+lb) {
		t.Fatalf("run.sh start: %v\n%s", err, out)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	if code, _, err := get(client, http.MethodGet, lb+"up"); err != nil || code != 200 {
		t.Fatalf("balancer /up: %d %v", code, err)
	}
	// The web nodes serve the service's routes (jetfleet's own serve has
	// none): the catalog's login (a session in NATS KV) and its item list,
	// read from MariaDB, through the balancer.
	if !strings.Contains(out, "(catalog serve)") || !strings.Contains(out, "2 x catalog work") {
		t.Errorf("run.sh start does not name the service's binary for the web nodes and workers:\n%s", out)
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	user := &http.Client{Timeout: 10 * time.Second, Jar: jar}
	resp, err := user.Post(lb+"login", "application/json", strings.NewReader(`{"name":"deploy-test"}`))
	if err != nil {
		t.Fatalf("POST /login through the balancer: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("POST /login through the balancer: %s", resp.Status)
	}
	if code, body, err := get(user, http.MethodGet, lb+"items"); err != nil || code != 200 {
		t.Fatalf("GET /items through the balancer, logged in: %d %v\n%.300s", code, err, body)
	}

	if out, err := script(time.Minute, "kill", "web2", "KILL"); err != nil {
		t.Fatalf("run.sh kill web2: %v\n%s", err, out)
	}
	waitUntil(t, 10*time.Second, "run.sh status to show web2 stopped", func() bool {
		out, _ := script(time.Minute, "status")
		return strings.Contains(out, "web2") && strings.Contains(lineOf(out, "web2"), "stopped")
	})
	for i := range 20 {
		if code, _, err := get(client, http.MethodGet, lb+"up"); err != nil || code != 200 {
			t.Fatalf("request %d through the balancer with web2 killed: %d %v", i, code, err)
		}
	}
	if out, err := script(time.Minute, "restart", "web2"); err != nil {
		t.Fatalf("run.sh restart web2: %v\n%s", err, out)
	}
	waitUntil(t, 60*time.Second, "web2 /up after its restart", func() bool {
		code, _, err := get(client, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/up", p[12]))
		return err == nil && code == 200
	})

	if out, err := script(3*time.Minute, "stop"); err != nil {
		t.Fatalf("run.sh stop: %v\n%s", err, out)
	}
	out, err = script(time.Minute, "status")
	if err != nil || strings.Contains(out, "running") {
		t.Fatalf("after run.sh stop, run.sh status says: %v\n%s", err, out)
	}
	if out, err := script(3*time.Minute, "down"); err != nil {
		t.Fatalf("run.sh down: %v\n%s", err, out)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Fatalf("run.sh down left %s: %v", state, err)
	}
}

func lineOf(text, prefix string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix+" ") {
			return l
		}
	}
	return ""
}
