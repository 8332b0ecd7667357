package dashboard_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/dashboard"
	"github.com/jetfleet/jetfleet/workers"
)

// cell is the text of a queue table cell: <tr data-queue=q> ... data-field=f.
func cell(t *testing.T, page, queue, field string) string {
	t.Helper()
	row := regexp.MustCompile(`(?s)<tr data-queue="` + queue + `">(.*?)</tr>`).FindStringSubmatch(page)
	if row == nil {
		t.Fatalf("no row for queue %s", queue)
	}
	m := regexp.MustCompile(`(?s)data-field="` + field + `">(.*?)</td>`).FindStringSubmatch(row[1])
	if m == nil {
		t.Fatalf("no %s cell for queue %s", field, queue)
	}
	return strings.TrimSpace(regexp.MustCompile(`<[^>]+>`).ReplaceAllString(m[1], ""))
}

// TestOverviewShowsTheQueues: the overview and its live fragment show
// each queue's counts as Inspector.Stats reads them, the paused state,
// the failures of the last hour and a pause button per queue.
func TestOverviewShowsTheQueues(t *testing.T) {
	e := newEnv(t, dashboard.Config{Open: true})
	e.deadLetter(t, "default", 2)
	ctx := context.Background()
	for range 4 {
		if _, err := e.d.Dispatch(ctx, workers.Noop{}, bus.OnQueue("high")); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.in.Pause(ctx, "high"); err != nil {
		t.Fatal(err)
	}
	c := browser(t)
	for _, u := range []string{"/jetfleet", "/jetfleet/fragments/overview"} {
		code, page, _ := do(t, c, "GET", e.url+u, nil)
		if code != 200 {
			t.Fatalf("%s: %d", u, code)
		}
		for _, want := range [][3]string{
			{"high", "ready", "4"}, {"high", "failed", "0"}, {"high", "status", "Paused"},
			{"default", "ready", "0"}, {"default", "failed", "2"}, {"default", "status", "Running"},
		} {
			if got := cell(t, page, want[0], want[1]); got != want[2] {
				t.Errorf("%s: %s of %s = %q, want %q", u, want[1], want[0], got, want[2])
			}
		}
		if !strings.Contains(page, `data-stat="failed-hour">2<`) {
			t.Errorf("%s: failed in the last hour is not 2", u)
		}
		if !strings.Contains(page, `aria-label="Resume queue high"`) || !strings.Contains(page, `aria-label="Pause queue default"`) {
			t.Errorf("%s: pause/resume buttons missing", u)
		}
	}
	_, frag, _ := do(t, c, "GET", e.url+"/jetfleet/fragments/overview", nil)
	if strings.Contains(frag, "<html") || strings.Contains(frag, "<script") {
		t.Error("the fragment is a whole page")
	}
}

// TestRetryAllSaysWhatItLeft: "Retry all" retries what a worker would
// run and says that the others stay: here a job published on a subject
// that broke the naming rule, dead-lettered on the queue "unknown".
func TestRetryAllSaysWhatItLeft(t *testing.T) {
	e := newEnv(t, dashboard.Config{Open: true})
	e.deadLetter(t, "high", 1)
	bad := &bus.Job{ID: "bad-subject", Queue: "unknown", Kind: "unknown", Seq: 1000, Header: nats.Header{}, Body: []byte("{}")}
	if err := bus.DeadLetter(context.Background(), e.js, bad, bus.Failure{Reason: "subject jobs.high.Bad.Kind breaks the naming rule"}); err != nil {
		t.Fatal(err)
	}
	c := browser(t)
	_, page, _ := do(t, c, "GET", e.url+"/jetfleet/failed", nil)
	code, _, resp := do(t, c, "POST", e.url+"/jetfleet/failed/retry-all", url.Values{"csrf": {csrfOf(t, page)}})
	if code != http.StatusSeeOther {
		t.Fatalf("retry all: %d, want 303", code)
	}
	_, after, _ := do(t, c, "GET", e.url+resp.Header.Get("Location"), nil)
	if !strings.Contains(after, "Retried 1 job(s): back on their queues. The others stay here") || !strings.Contains(after, `data-job="bad-subject"`) {
		t.Errorf("after retry all: want the notice that some stay and bad-subject still listed; page:\n%s", after)
	}
	if h := stats(t, e, "high", func(q bus.QueueStats) bool { return q.Ready == 1 }); h.Ready != 1 || h.Failed != 0 {
		t.Errorf("high after retry all: ready %d, failed %d; want 1 and 0", h.Ready, h.Failed)
	}
}

// TestFailedJobsListDetailRetryForget: the list shows dead letters newest
// first with filters and pages; a job's page shows its error, body and
// headers; retry puts it back on its queue and forget removes it, each
// leaving the list; retry-all retries only its filter's jobs.
func TestFailedJobsListDetailRetryForget(t *testing.T) {
	e := newEnv(t, dashboard.Config{Open: true, PageSize: 2})
	e.deadLetter(t, "default", 3)
	e.deadLetter(t, "high", 1)
	c := browser(t)
	_, page, _ := do(t, c, "GET", e.url+"/jetfleet/failed?queue=default", nil)
	ids := regexp.MustCompile(`<tr data-job="([^"]+)">`).FindAllStringSubmatch(page, -1)
	if len(ids) != 2 || !strings.Contains(page, `rel="next"`) {
		t.Fatalf("page 1 of default: %d jobs, older link %v; want 2 and a link", len(ids), strings.Contains(page, `rel="next"`))
	}
	_, page2, _ := do(t, c, "GET", e.url+"/jetfleet/failed?queue=default&page=2", nil)
	if n := strings.Count(page2, "<tr data-job="); n != 1 || !strings.Contains(page2, `rel="prev"`) {
		t.Fatalf("page 2 of default: %d jobs", n)
	}
	id := ids[0][1]

	_, detail, _ := do(t, c, "GET", e.url+"/jetfleet/failed/"+url.PathEscape(id), nil)
	for _, want := range []string{"<pre aria-labelledby=\"h-error\">boom ", "Jetfleet-Error", "Nats-Msg-Id", `&#34;message&#34;: &#34;boom `} {
		if !strings.Contains(detail, want) {
			t.Errorf("detail of %s lacks %q", id, want)
		}
	}
	token := csrfOf(t, detail)
	code, _, resp := do(t, c, "POST", e.url+"/jetfleet/failed/"+url.PathEscape(id)+"/retry", url.Values{"csrf": {token}, "back": {"/jetfleet/failed?queue=default"}})
	if code != http.StatusSeeOther {
		t.Fatalf("retry: %d", code)
	}
	_, after, _ := do(t, c, "GET", e.url+resp.Header.Get("Location"), nil)
	if strings.Contains(after, `data-job="`+id+`"`) || !strings.Contains(after, "Retried 1 job(s)") {
		t.Errorf("after retry the job is still listed or no notice")
	}
	want := func(ready, failed uint64) func(bus.QueueStats) bool {
		return func(q bus.QueueStats) bool { return q.Ready == ready && q.Failed == failed }
	}
	if st := stats(t, e, "default", want(1, 2)); st.Ready != 1 || st.Failed != 2 {
		t.Errorf("after retry: ready %d, failed %d; want 1 and 2", st.Ready, st.Failed)
	}

	forget := ids[1][1]
	if code, _, _ := do(t, c, "POST", e.url+"/jetfleet/failed/"+url.PathEscape(forget)+"/forget", url.Values{"csrf": {token}}); code != http.StatusSeeOther {
		t.Fatalf("forget: %d", code)
	}
	if code, _, _ := do(t, c, "GET", e.url+"/jetfleet/failed/"+url.PathEscape(forget), nil); code != http.StatusNotFound {
		t.Errorf("a forgotten job's page: %d, want 404", code)
	}
	code, _, _ = do(t, c, "POST", e.url+"/jetfleet/failed/retry-all", url.Values{"csrf": {token}, "queue": {"high"}})
	if code != http.StatusSeeOther {
		t.Fatalf("retry all: %d", code)
	}
	if d, h := stats(t, e, "default", func(q bus.QueueStats) bool { return q.Failed == 1 }), stats(t, e, "high", want(1, 0)); d.Failed != 1 || h.Failed != 0 || h.Ready != 1 {
		t.Errorf("after retry-all of high: default failed %d (want 1), high failed %d ready %d (want 0, 1)", d.Failed, h.Failed, h.Ready)
	}
	if code, _, _ := do(t, c, "POST", e.url+"/jetfleet/queues/nope/pause", url.Values{"csrf": {token}}); code != http.StatusBadRequest {
		t.Errorf("pausing an unknown queue: %d, want 400", code)
	}
	for _, path := range []string{"/failed", "/fragments/failed", "/jobs", "/fragments/jobs"} {
		if code, _, _ := do(t, c, "GET", e.url+"/jetfleet"+path+"?queue=Bad%20Name", nil); code != http.StatusBadRequest {
			t.Errorf("%s with an invalid filter: %d, want 400", path, code)
		}
	}
}

// stats returns queue's stats once ok accepts them, or the last ones read
// after 5 s. The server counts a stored job as ready a moment after it
// acknowledges the store, so a count read straight after a retry waits.
func stats(t *testing.T, e *env, queue string, ok func(bus.QueueStats) bool) bus.QueueStats {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := e.in.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(st.Queues, func(q bus.QueueStats) bool { return q.Queue == queue })
		if i < 0 {
			t.Fatalf("no queue %s", queue)
		}
		if ok(st.Queues[i]) || time.Now().After(deadline) {
			return st.Queues[i]
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestEveryHTMLResponseIsLockedDown: every HTML response of the dashboard
// (pages, live fragments, a job's page, a 404 below its prefix, a 401)
// forbids framing, sniffing and referrers, and its Content-Security-Policy
// allows only the scripts and styles carrying this response's own nonce,
// which differs from one response to the next.
func TestEveryHTMLResponseIsLockedDown(t *testing.T) {
	e := newEnv(t, dashboard.Config{Open: true})
	e.deadLetter(t, "default", 1)
	jobs, err := e.in.FailedJobs(context.Background(), bus.FailedFilter{})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("failed jobs: %v, %v", jobs, err)
	}
	closed := newEnv(t, dashboard.Config{Token: "a-token-of-16-chars-or-more"})
	c := browser(t)
	nonceRE := regexp.MustCompile(`script-src 'nonce-([A-Za-z0-9_-]+)'; style-src 'nonce-([A-Za-z0-9_-]+)'`)
	tagRE := regexp.MustCompile(`<(script|style)\b[^>]*>`)
	seen := map[string]bool{}
	for _, u := range []string{
		e.url + "/jetfleet", e.url + "/jetfleet/failed", e.url + "/jetfleet/failed/" + url.PathEscape(jobs[0].ID),
		e.url + "/jetfleet/fragments/overview", e.url + "/jetfleet/fragments/failed", e.url + "/jetfleet/nothing-here",
		closed.url + "/jetfleet",
	} {
		_, page, resp := do(t, c, "GET", u, nil)
		h := resp.Header
		for name, want := range map[string]string{"X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"} {
			if got := h.Get(name); got != want {
				t.Errorf("%s: %s = %q, want %q", u, name, got, want)
			}
		}
		csp := h.Get("Content-Security-Policy")
		m := nonceRE.FindStringSubmatch(csp)
		if m == nil || m[1] != m[2] || !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", u, csp)
			continue
		}
		if seen[m[1]] {
			t.Errorf("%s: nonce %s used twice", u, m[1])
		}
		seen[m[1]] = true
		for _, tag := range tagRE.FindAllString(page, -1) {
			if !strings.Contains(tag, `nonce="`+m[1]+`"`) {
				t.Errorf("%s: %s without this response's nonce", u, tag)
			}
		}
	}
}

// TestOverviewShowsFailedPerMinute: beside the jobs per minute the
// overview shows the jobs that failed for good in about the last minute,
// as `jetfleet queue stats` does (DONE/1M and FAIL/1M).
func TestOverviewShowsFailedPerMinute(t *testing.T) {
	e := newEnv(t, dashboard.Config{Open: true})
	runWorker(t, e, workers.Config{Queues: []string{"default"}, Tries: 1, PresenceInterval: 100 * time.Millisecond})
	ctx := context.Background()
	for i := range 5 {
		var args bus.Args = workers.Noop{}
		if i < 2 {
			args = workers.Fail{Message: "boom"}
		}
		if _, err := e.d.Dispatch(ctx, args); err != nil {
			t.Fatal(err)
		}
	}
	c := browser(t)
	var page string
	waitFor(t, "3 jobs and 2 failed per minute", func() bool {
		_, page, _ = do(t, c, "GET", e.url+"/jetfleet/fragments/overview", nil)
		return strings.Contains(page, `data-stat="jobs-per-minute">3<`) && strings.Contains(page, `data-stat="failed-per-minute">2<`)
	})
	if !strings.Contains(page, "<dt>Failed per minute</dt>") {
		t.Errorf("the failed per minute card has no label")
	}
}
