package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/internal/natstest"
)

// serveNode starts `jetfleet serve` on the NATS server and SQLite file of
// an `up` in dir, with env, and returns its base URL.
func serveNode(t *testing.T, dir string, env []string) string {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(t, 1)[0])
	p := startProc(t, dir, env, "serve", "--listen", addr)
	p.WaitFor(t, "web node serving", 60*time.Second)
	return "http://" + addr
}

// TestServeDashboardAccess runs `jetfleet serve` in production mode: with
// no dashboard credentials /jetfleet is 404 (and /metrics is served); with
// JETFLEET_DASHBOARD_TOKEN a wrong token is 401, the right one (?token=,
// then its cookie) opens the page, and a POST without the CSRF token is
// 403 while the page's own form works.
func TestServeDashboardAccess(t *testing.T) {
	_, dir, _ := startUp(t, testEnv())
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string, header ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if len(header) == 2 {
			req.Header.Set(header[0], header[1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	post := func(u string, form url.Values) int {
		t.Helper()
		resp, err := client.PostForm(u, form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	closed := serveNode(t, dir, testEnv())
	for _, u := range []string{"/jetfleet", "/jetfleet/failed"} {
		if code, _ := get(closed + u); code != http.StatusNotFound {
			t.Errorf("without credentials GET %s = %d, want 404", u, code)
		}
	}
	if code := post(closed+"/jetfleet/queues/default/pause", url.Values{}); code != http.StatusNotFound {
		t.Errorf("without credentials POST pause = %d, want 404", code)
	}
	if code, body := get(closed + "/metrics"); code != 200 || !strings.Contains(body, "jetfleet_queue_ready_jobs") {
		t.Errorf("/metrics on serve: %d", code)
	}

	node := serveNode(t, dir, testEnv("JETFLEET_DASHBOARD_TOKEN=ops-token-0123456789"))
	if code, _ := get(node + "/jetfleet"); code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", code)
	}
	if code, _ := get(node+"/jetfleet", "Authorization", "Bearer nope"); code != http.StatusUnauthorized {
		t.Errorf("wrong bearer token: %d, want 401", code)
	}
	if code, _ := get(node + "/jetfleet?token=nope"); code != http.StatusUnauthorized {
		t.Errorf("wrong ?token=: %d, want 401", code)
	}
	if code, _ := get(node + "/jetfleet?token=ops-token-0123456789"); code != http.StatusSeeOther {
		t.Fatalf("right ?token=: %d, want 303", code)
	}
	code, page := get(node + "/jetfleet")
	if code != 200 || !strings.Contains(page, `data-queue="default"`) {
		t.Fatalf("with the cookie: %d", code)
	}
	if code := post(node+"/jetfleet/queues/default/pause", url.Values{}); code != http.StatusForbidden {
		t.Errorf("POST without CSRF: %d, want 403", code)
	}
	token := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if token == nil {
		t.Fatal("no CSRF token on the page")
	}
	if code := post(node+"/jetfleet/queues/default/pause", url.Values{"csrf": {token[1]}}); code != http.StatusSeeOther {
		t.Errorf("POST with the page's CSRF token: %d, want 303", code)
	}
	if r := runJF(t, dir, testEnv(), "", "queue", "stats"); !strings.Contains(r.Stdout, "Paused: default") {
		t.Errorf("queue stats after pausing on the dashboard:\n%s", r.Stdout)
	}
}
