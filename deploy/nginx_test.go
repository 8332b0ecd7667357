package deploy_test

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const nginxConf = "nginx/jetfleet.conf"

// nginxPrefix writes a minimal nginx.conf in a temporary prefix that
// includes conf (jetfleet.conf, or a copy of it), the way a distribution's
// nginx.conf includes conf.d/*.conf, and returns the prefix and the file.
func nginxPrefix(t *testing.T, conf string) (prefix, main string) {
	t.Helper()
	prefix = t.TempDir()
	for _, d := range []string{"logs", "tmp"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	abs, err := filepath.Abs(conf)
	if err != nil {
		t.Fatal(err)
	}
	main = filepath.Join(prefix, "nginx.conf")
	text := fmt.Sprintf(`# minimal nginx.conf for the test: a single process in the foreground
daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log stderr;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    include %[2]s;
}
`, prefix, abs)
	if err := os.WriteFile(main, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return prefix, main
}

// The shipped jetfleet.conf, included in the http block, passes `nginx -t`,
// and says that open-source nginx has no active health checks.
func TestNginxConfigCheck(t *testing.T) {
	t.Parallel()
	bin := tool(t, "nginx", "nginx")
	prefix, main := nginxPrefix(t, nginxConf)
	out, err := run(t, 30*time.Second, nil, bin, "-t", "-e", "stderr", "-p", prefix+"/", "-c", main)
	if err != nil || !strings.Contains(out, "test is successful") {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	if strings.Contains(out, "[warn]") {
		t.Errorf("nginx -t warns:\n%s", out)
	}
	text := readFile(t, nginxConf)
	for _, want := range []string{"no active health checks", "max_fails=", "fail_timeout=",
		"proxy_next_upstream error timeout http_502 http_503;", "keepalive "} {
		if !strings.Contains(strings.ToLower(text), strings.ToLower(want)) {
			t.Errorf("%s lacks %q", nginxConf, want)
		}
	}
	if strings.Contains(strings.Join(significantLines(text), "\n"), "non_idempotent") {
		t.Errorf("%s resends non-idempotent requests (non_idempotent)", nginxConf)
	}
}

// A real nginx running the shipped jetfleet.conf (upstream addresses and
// listen port moved to loopback) in front of two live web nodes and one
// dead one: every request succeeds, GET and POST alike (a refused
// connection is retried on the next node), spread over the live nodes.
func TestNginxFailsOver(t *testing.T) {
	bin := tool(t, "nginx", "nginx")
	web1, web2 := startNode(t, "web1", time.Second, nil), startNode(t, "web2", time.Second, nil)
	dead := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	port := freePort(t)
	conf := filepath.Join(t.TempDir(), "jetfleet.conf")
	text := rewrite(t, nginxConf, readFile(t, nginxConf),
		"listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", port),
		"192.0.2.11:8080", web1.addr,
		"192.0.2.12:8080", dead,
		"192.0.2.13:8080", web2.addr,
	)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	prefix, main := nginxPrefix(t, conf)
	cmd := exec.Command(bin, "-e", "stderr", "-p", prefix+"/", "-c", main)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("nginx output:\n%s", out.String())
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	client := &http.Client{Timeout: 10 * time.Second}
	waitUntil(t, 10*time.Second, "nginx to listen", func() bool {
		_, _, err := get(client, http.MethodGet, url)
		return err == nil
	})
	seen := map[string]int{}
	for i := range 30 {
		method := http.MethodGet
		if i%3 == 0 {
			method = http.MethodPost
		}
		code, body, err := get(client, method, url)
		if err != nil || code != 200 {
			t.Fatalf("%s %d through nginx with one node dead: %d %v", method, i, code, err)
		}
		seen[body]++
	}
	if seen["web1"] == 0 || seen["web2"] == 0 {
		t.Errorf("requests per node: %v, want both live nodes used", seen)
	}
}
