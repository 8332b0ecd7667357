package healthz

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// The status rules and formats, without a server or a clock: the other
// test files run them behind real listeners and a real NATS server.

// A check's status: nil → ok; an error wrapping ErrDegraded → degraded,
// even when critical; any other error → down when critical, else degraded.
func TestClassifyFollowsTheDocumentedRules(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	for _, tc := range []struct {
		critical bool
		err      error
		want     string
	}{
		{true, nil, CheckOK},
		{false, nil, CheckOK},
		{true, boom, CheckDown},
		{false, boom, CheckDegraded},
		{true, fmt.Errorf("2 of 3 replicas down: %w", ErrDegraded), CheckDegraded},
		{false, fmt.Errorf("x: %w", ErrDegraded), CheckDegraded},
		{true, fmt.Errorf("timed out: %w", context.DeadlineExceeded), CheckDown},
	} {
		c := &checker{Check: Check{Name: "c", Critical: tc.critical}}
		r := c.classify(tc.err, 1500*time.Microsecond)
		wantErr := ""
		if tc.err != nil {
			wantErr = tc.err.Error()
		}
		if r.Status != tc.want || r.Critical != tc.critical || r.Error != wantErr || r.TookMS != 1.5 {
			t.Errorf("critical %v, error %v: %+v, want status %s, error %q, took 1.5ms", tc.critical, tc.err, r, tc.want, wantErr)
		}
	}
}

// The node is down when any check is down, up otherwise; degraded checks
// are listed in check order and do not change the status.
func TestNodeStatusFromCheckResults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		statuses     []string
		want         string
		wantDegraded []string
		code         int
	}{
		{[]string{CheckOK, CheckOK, CheckOK}, StatusUp, nil, 200},
		{[]string{CheckOK, CheckDegraded, CheckDegraded}, StatusUp, []string{"b", "c"}, 200},
		{[]string{CheckDegraded, CheckDown, CheckOK}, StatusDown, []string{"a"}, 503},
		{[]string{CheckDown, CheckDown, CheckDown}, StatusDown, nil, 503},
		{nil, StatusUp, nil, 200},
	} {
		h := &Health{}
		var pubs []*published
		for i, s := range tc.statuses {
			h.checks = append(h.checks, &checker{Check: Check{Name: string(rune('a' + i))}})
			pubs = append(pubs, &published{res: CheckResult{Status: s}})
		}
		rep := h.snapshot(pubs).rep
		if rep.Status != tc.want || !slices.Equal(rep.Degraded, tc.wantDegraded) || rep.HTTPStatus() != tc.code || len(rep.Checks) != len(tc.statuses) {
			t.Errorf("checks %v: %s, degraded %v, HTTP %d; want %s, %v, %d", tc.statuses, rep.Status, rep.Degraded, rep.HTTPStatus(), tc.want, tc.wantDegraded, tc.code)
		}
	}
	if code := (Report{Status: StatusDraining}).HTTPStatus(); code != 503 {
		t.Errorf("draining: HTTP %d, want 503", code)
	}
}

// Unnamed checks are numbered, a repeated name is renamed and always fails,
// a check without Run always fails, and the timeout defaults to 1s.
func TestNormalizeMakesMistakesVisible(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	ok := func(context.Context) error { return nil }
	checks := []Check{
		{Name: "nats", Run: ok, Timeout: 3 * time.Second},
		{Run: ok},
		{Name: "nats", Run: ok},
		{Name: "db"},
		{Name: "neg", Run: ok, Timeout: -time.Second},
	}
	var got []Check
	for i, c := range checks {
		got = append(got, normalize(c, i, seen))
	}
	names := []string{got[0].Name, got[1].Name, got[2].Name, got[3].Name, got[4].Name}
	if !slices.Equal(names, []string{"nats", "check-2", "nats#3", "db", "neg"}) {
		t.Errorf("names = %q", names)
	}
	if got[0].Timeout != 3*time.Second || got[1].Timeout != time.Second || got[4].Timeout != time.Second {
		t.Errorf("timeouts = %s, %s, %s; want 3s, 1s, 1s", got[0].Timeout, got[1].Timeout, got[4].Timeout)
	}
	if err := got[0].Run(context.Background()); err != nil {
		t.Errorf("a good check's Run was replaced: %v", err)
	}
	if err := got[2].Run(context.Background()); err == nil || !strings.Contains(err.Error(), `check 3 repeats the name "nats": names must be unique`) {
		t.Errorf("the repeated name's Run = %v", err)
	}
	if err := got[3].Run(context.Background()); err == nil || !strings.Contains(err.Error(), `check "db" has no Run func`) {
		t.Errorf("the check without Run = %v", err)
	}
}

// ?format= wins, then ?verbose (text), then Accept; JSON only when the
// client prefers it to HTML.
func TestFormatNegotiation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ target, accept, want string }{
		{"/up", "", "html"},
		{"/up?format=json", "text/html", "json"},
		{"/up?format=text", "application/json", "text"},
		{"/up?format=html", "application/json", "html"},
		{"/up?format=xml", "application/json", "json"},
		{"/readyz?verbose", "application/json", "text"},
		{"/readyz?verbose&format=json", "", "json"},
		{"/up?other=1", "application/json", "json"},
		{"/up", "application/json", "json"},
		{"/up", "APPLICATION/JSON", "json"},
		{"/up", "application/json;q=0", "html"},
		{"/up", "application/json;q=0.5, text/html", "html"},
		{"/up", "text/html;q=0.5, application/json", "json"},
		{"/up", "text/html, application/json", "html"},
		{"/up", "application/json, text/html", "json"},
		{"/up", "application/json;q=bad, text/html;q=0.9", "json"}, // a bad q counts as 1
		{"/up", "application/jsonp", "html"},
		{"/up", "application/problem+json", "html"},
		{"/up", "*/*", "html"},
	} {
		r := httptest.NewRequest(http.MethodGet, tc.target, nil)
		if tc.accept != "" {
			r.Header.Set("Accept", tc.accept)
		}
		if got := format(r); got != tc.want {
			t.Errorf("GET %s, Accept %q: %s, want %s", tc.target, tc.accept, got, tc.want)
		}
	}
}

// The Kubernetes-style listing, in check order, one line per check.
func TestTextListing(t *testing.T) {
	t.Parallel()
	rep := Report{
		Status: StatusDown,
		Checks: map[string]CheckResult{
			"nats":        {Status: CheckOK},
			"db.replicas": {Status: CheckDegraded, Error: "replica-1\nunreachable"},
			"sessions":    {Status: CheckDown, Error: "bucket\r\ngone"},
		},
		Degraded: []string{"db.replicas"},
		order:    []string{"nats", "db.replicas", "sessions"},
	}
	want := "[+]nats ok\n[+]db.replicas degraded: replica-1 unreachable\n[-]sessions failed: bucket  gone\nreadyz check failed\n"
	if got := rep.text(); got != want {
		t.Errorf("text() =\n%s\nwant\n%s", got, want)
	}
	if got := (Report{Status: StatusDraining}).text(); got != "readyz check failed: draining\n" {
		t.Errorf("draining text() = %q", got)
	}
	if got := agentReason(rep); got != "sessions: bucket  gone" {
		t.Errorf("agentReason = %q, want the down checks only", got)
	}
	page := rep.html()
	if !strings.Contains(page, `<h1 class="down">down</h1>`) || !strings.Contains(page, "degraded: db.replicas") ||
		strings.Index(page, "<td>nats</td>") > strings.Index(page, "<td>sessions</td>") {
		t.Errorf("html() = %s", page)
	}
	esc := Report{Status: StatusUp, Checks: map[string]CheckResult{"<b>": {Status: CheckDegraded, Error: "<script>"}}, order: []string{"<b>"}, Degraded: []string{"<b>"}}
	if page := esc.html(); strings.Contains(page, "<script>") || strings.Contains(page, "<td><b>") {
		t.Errorf("html() does not escape names and errors: %s", page)
	}
}

// The agent's weight falls linearly from 100% with no request in flight to
// 1% at AgentMaxInFlight, and is not reported without a maximum.
func TestAgentWeight(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		max, inFlight int
		want          int
		reported      bool
	}{
		{0, 5, 0, false},
		{-1, 0, 0, false},
		{10, 0, 100, true},
		{10, 3, 70, true},
		{10, 9, 10, true},
		{10, 10, 1, true},
		{10, 50, 1, true},
		{200, 1, 100, true},
	} {
		h := &Health{maxInFlight: tc.max}
		h.inFlight.Store(int64(tc.inFlight))
		if w, ok := h.weight(); w != tc.want || ok != tc.reported {
			t.Errorf("max %d, in flight %d: weight %d, %v; want %d, %v", tc.max, tc.inFlight, w, ok, tc.want, tc.reported)
		}
	}
}

func TestDrainOptionsDefaults(t *testing.T) {
	t.Parallel()
	o := DrainOptions{}.withDefaults()
	if o.DrainDelay != 5*time.Second || o.Grace != 30*time.Second {
		t.Errorf("zero DrainOptions = %+v, want 5s and 30s", o)
	}
	if o := (DrainOptions{DrainDelay: -1, Grace: -1}).withDefaults(); o.DrainDelay != 0 || o.Grace != 30*time.Second {
		t.Errorf("negative: drain delay %s, grace %s; want none and 30s", o.DrainDelay, o.Grace)
	}
	if o := (DrainOptions{DrainDelay: time.Second, Grace: 2 * time.Second}).withDefaults(); o.DrainDelay != time.Second || o.Grace != 2*time.Second {
		t.Errorf("set values changed: %+v", o)
	}
}
