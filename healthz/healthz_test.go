package healthz_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/healthz"
	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

func TestUpAnswersInEachFormat(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	nc, js := natstest.Connect(t, ns.ClientURL())
	_, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "sessions"})
	must(t, err)
	h := healthz.New(healthz.Config{},
		healthz.Check{Name: "nats", Critical: true, Timeout: checkTimeout, Run: natsCheck(nc, js)},
		healthz.Check{Name: "sessions", Critical: true, Timeout: checkTimeout, Run: bucketCheck(js, "sessions")},
	)
	base := healthServer(t, h)

	html := get(t, base+"/up", "")
	if html.code != 200 || !strings.HasPrefix(html.header.Get("Content-Type"), "text/html") ||
		!contains(html.body, `<h1 class="up">up</h1>`, "<td>nats</td>", "<td>sessions</td>") {
		t.Errorf("GET /up = %d %q %q, want 200 and an HTML page listing both checks", html.code, html.header.Get("Content-Type"), html.body)
	}
	for _, r := range []response{html, get(t, base+"/readyz", ""), get(t, base+"/livez", ""), get(t, base+"/up?format=json", "")} {
		if cc := r.header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control = %q, want no-store", cc)
		}
	}
	code, rep := getReport(t, base+"/up")
	if code != 200 || rep.Status != "up" || len(rep.Checks) != 2 || len(rep.Degraded) != 0 {
		t.Errorf("GET /up as JSON = %d %+v, want 200, status up, two checks", code, rep)
	}
	if c := rep.Checks["nats"]; c.Status != "ok" || c.Error != "" || c.TookMS <= 0 || !c.Critical {
		t.Errorf("nats check = %+v, want ok, no error, took_ms > 0, critical", c)
	}
	if r := get(t, base+"/readyz?verbose", ""); r.code != 200 || r.body != "[+]nats ok\n[+]sessions ok\nreadyz check passed\n" ||
		!strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Errorf("GET /readyz?verbose = %d %q", r.code, r.body)
	}
	if r := get(t, base+"/livez", "application/json"); r.code != 200 || r.body != "ok\n" {
		t.Errorf("GET /livez = %d %q, want 200 ok", r.code, r.body)
	}
	if r := get(t, base+"/readyz", ""); r.code != 200 || !contains(r.body, `<h1 class="up">`) {
		t.Errorf("GET /readyz = %d %q, want the same page as /up", r.code, r.body)
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/up", nil)
	if r := do(t, http.DefaultClient, req); r.code != http.StatusMethodNotAllowed {
		t.Errorf("POST /up = %d, want 405", r.code)
	}
}

func TestUpNegotiatesJSON(t *testing.T) {
	t.Parallel()
	h := healthz.New(healthz.Config{}, healthz.Check{Name: "noop", Run: func(context.Context) error { return nil }})
	base := healthServer(t, h)
	for _, tc := range []struct {
		path, accept, want string
	}{
		{"/up", "", "text/html"},
		{"/up", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html"},
		{"/up", "application/json", "application/json"},
		{"/up", "application/json, text/plain, */*", "application/json"},
		{"/up", "text/html;q=0.9, application/json", "application/json"},
		{"/up", "text/html, application/json", "text/html"},
		{"/up", "application/json;q=0", "text/html"},
		{"/up?format=json", "text/html", "application/json"},
		{"/up?format=text", "application/json", "text/plain"},
		{"/readyz?verbose", "application/json", "text/plain"},
		{"/readyz?verbose&format=json", "", "application/json"},
	} {
		r := get(t, base+tc.path, tc.accept)
		if ct := r.header.Get("Content-Type"); r.code != 200 || !strings.HasPrefix(ct, tc.want) {
			t.Errorf("GET %s with Accept %q = %d %q, want %s", tc.path, tc.accept, r.code, ct, tc.want)
		}
	}
}

func TestCriticalFailureIsDownNonCriticalIsDegraded(t *testing.T) {
	ns := natstest.Start(t)
	nc, js := natstest.Connect(t, ns.ClientURL())
	replicas := healthz.Check{Name: "db.replicas", Timeout: checkTimeout, Run: dialCheck(closedAddr(t))}
	nats := healthz.Check{Name: "nats", Critical: true, Timeout: checkTimeout, Run: natsCheck(nc, js)}

	down := healthServer(t, healthz.New(healthz.Config{}, nats, replicas,
		healthz.Check{Name: "sessions", Critical: true, Timeout: checkTimeout, Run: bucketCheck(js, "sessions")}))
	code, rep := getReport(t, down+"/up")
	if s := rep.Checks["sessions"]; code != 503 || rep.Status != "down" || s.Status != "down" || !strings.Contains(s.Error, "bucket not found") {
		t.Errorf("with the session bucket missing: %d %+v, want 503 down and the sessions check down (bucket not found)", code, rep)
	}
	if r := get(t, down+"/readyz?verbose", ""); r.code != 503 || !contains(r.body, "[+]nats ok\n", "[+]db.replicas degraded: dial tcp", "[-]sessions failed: ", "readyz check failed\n") {
		t.Errorf("GET /readyz?verbose = %d %q", r.code, r.body)
	}
	if r := get(t, down+"/up", ""); r.code != 503 || !contains(r.body, `<h1 class="down">down</h1>`, "bucket not found") {
		t.Errorf("GET /up HTML = %d %q, want 503 down with the error", r.code, r.body)
	}

	degraded := healthServer(t, healthz.New(healthz.Config{}, nats, replicas))
	code, rep = getReport(t, degraded+"/up")
	if r := rep.Checks["db.replicas"]; code != 200 || rep.Status != "up" || fmt.Sprint(rep.Degraded) != "[db.replicas]" ||
		r.Status != "degraded" || !strings.Contains(r.Error, "connection refused") || r.Critical {
		t.Errorf("with the replica down: %d %+v, want 200 up with db.replicas degraded (connection refused)", code, rep)
	}
	if r := get(t, degraded+"/up", ""); r.code != 200 || !contains(r.body, `<h1 class="up">up</h1>`, "degraded: db.replicas") {
		t.Errorf("GET /up HTML = %d %q, want 200 up, degraded: db.replicas", r.code, r.body)
	}
}

// TestDownAfterHoldsOffAShortOutage: a critical check with DownAfter is
// degraded while it has failed for less than that, down after, and a
// success starts the count again.
func TestDownAfterHoldsOffAShortOutage(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	h := healthz.New(healthz.Config{CacheFor: -1}, healthz.Check{Name: "sessions", Critical: true, DownAfter: 600 * time.Millisecond, Timeout: checkTimeout, Run: bucketCheck(js, "sessions")})
	up := healthServer(t, h) + "/up"
	began := time.Now()
	code, rep := getReport(t, up)
	if s := rep.Checks["sessions"]; code != 200 || s.Status != "degraded" || !strings.Contains(s.Error, "down after 600ms") {
		t.Fatalf("a critical check failing for the first time: %d %+v, want 200 with sessions degraded", code, rep)
	}
	waitFor(t, 5*time.Second, "503 once the check has failed for 600ms", func() bool {
		code, rep = getReport(t, up)
		return code == 503
	})
	if took := time.Since(began); took < 600*time.Millisecond || rep.Checks["sessions"].Status != "down" {
		t.Errorf("503 after %s: %+v, want down after 600ms of failures", took, rep)
	}
	if _, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "sessions"}); err != nil {
		t.Fatal(err)
	}
	if code, rep = getReport(t, up); code != 200 || rep.Checks["sessions"].Status != "ok" {
		t.Errorf("after the bucket came: %d %+v, want 200 ok", code, rep)
	}
}

func TestCriticalCheckCanReportDegraded(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	primary := bucketCheck(js, "sessions")
	h := healthz.New(healthz.Config{}, healthz.Check{Name: "db", Critical: true, Timeout: checkTimeout, Run: func(ctx context.Context) error {
		if err := primary(ctx); err != nil {
			return fmt.Errorf("1 of 2 replicas answer (%v): %w", err, healthz.ErrDegraded)
		}
		return nil
	}})
	code, rep := getReport(t, healthServer(t, h)+"/up")
	if code != 200 || rep.Status != "up" || rep.Checks["db"].Status != "degraded" || !strings.HasSuffix(rep.Checks["db"].Error, ": degraded") {
		t.Errorf("critical check failing with ErrDegraded: %d %+v, want 200 up, db degraded", code, rep)
	}
}

func TestBadChecksFailVisibly(t *testing.T) {
	t.Parallel()
	ok := func(context.Context) error { return nil }
	h := healthz.New(healthz.Config{},
		healthz.Check{Name: "a", Critical: true},
		healthz.Check{Name: "a", Critical: true, Run: ok},
		healthz.Check{Critical: true, Run: func(context.Context) error { panic("boom") }},
	)
	code, rep := getReport(t, healthServer(t, h)+"/up")
	want := map[string]string{"a": `check "a" has no Run func`, "a#2": `check 2 repeats the name "a"`, "check-3": "check panicked: boom"}
	for name, msg := range want {
		if c := rep.Checks[name]; c.Status != "down" || !strings.Contains(c.Error, msg) {
			t.Errorf("check %q = %+v, want down with %q", name, c, msg)
		}
	}
	if code != 503 || len(rep.Checks) != 3 {
		t.Errorf("GET /up = %d with %d checks, want 503 and 3 checks", code, len(rep.Checks))
	}
}

func TestUpFollowsNATSDownAndBack(t *testing.T) {
	cfg := natsembed.Config{Listen: "127.0.0.1:-1", StoreDir: t.TempDir()}
	ns, err := natsembed.Start(cfg)
	must(t, err)
	t.Cleanup(ns.Shutdown)
	cfg.Listen = strings.TrimPrefix(ns.ClientURL(), "nats://")
	nc, js := natstest.Connect(t, ns.ClientURL())
	h := healthz.New(healthz.Config{CacheFor: 100 * time.Millisecond},
		healthz.Check{Name: "nats", Critical: true, Timeout: 500 * time.Millisecond, Run: natsCheck(nc, js)})
	base := healthServer(t, h)
	// The check's short timeout makes the outage show quickly; it can also
	// cut a run on a loaded machine, so the first 200 is waited for.
	waitFor(t, 10*time.Second, "/up answers 200 while NATS runs", func() bool {
		code, _ := getReport(t, base+"/up")
		return code == 200
	})

	ns.Shutdown()
	stopped := time.Now()
	var rep healthz.Report
	waitFor(t, 2*time.Second, "/up turns 503 after NATS stops", func() bool {
		var code int
		code, rep = getReport(t, base+"/up")
		return code == 503
	})
	t.Logf("503 %s after NATS stopped: %+v", time.Since(stopped).Round(time.Millisecond), rep.Checks["nats"])
	if rep.Status != "down" || rep.Checks["nats"].Error == "" {
		t.Errorf("report with NATS stopped = %+v, want down with the nats error", rep)
	}

	ns2, err := natsembed.Start(cfg)
	must(t, err)
	t.Cleanup(ns2.Shutdown)
	waitFor(t, 10*time.Second, "/up turns 200 after NATS is back", func() bool {
		code, _ := getReport(t, base+"/up")
		return code == 200
	})
}
