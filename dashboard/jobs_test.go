package dashboard_test

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/dashboard"
	"github.com/jetfleet/jetfleet/metrics"
	"github.com/jetfleet/jetfleet/workers"
)

// runWorker runs a worker of the diagnostic kinds on e's queues until the
// test ends.
func runWorker(t *testing.T, e *env, cfg workers.Config) {
	t.Helper()
	w := workers.New(e.js, cfg)
	workers.RegisterDiagnostics(w)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = w.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// jobState waits until job id is in state want.
func jobState(t *testing.T, e *env, id string, want bus.JobState) {
	t.Helper()
	waitFor(t, "job "+id+" "+string(want), func() bool {
		st, err := e.in.Job(context.Background(), id)
		return err == nil && st.State == want
	})
}

// TestJobPageRefreshesOnlyWhileUnfinished: the page of a job not
// finished refreshes; the page of a succeeded, dead or cancelled job has
// no refresh, and its fragment (which a page opened earlier still asks
// for) tells the refresh to stop; an unknown job's page is a 404 without
// a refresh.
func TestJobPageRefreshesOnlyWhileUnfinished(t *testing.T) {
	e := newEnv(t, dashboard.Config{Open: true})
	ctx := context.Background()
	waiting, err := e.d.Dispatch(ctx, workers.Noop{}, bus.OnQueue("high"))
	if err != nil {
		t.Fatal(err)
	}
	cancelled, err := e.d.Dispatch(ctx, workers.Noop{}, bus.OnQueue("high"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.in.Cancel(ctx, cancelled); err != nil {
		t.Fatal(err)
	}
	runWorker(t, e, workers.Config{Queues: []string{"default"}, Tries: 1})
	succeeded, err := e.d.Dispatch(ctx, workers.Noop{})
	if err != nil {
		t.Fatal(err)
	}
	dead, err := e.d.Dispatch(ctx, workers.Fail{Message: "boom"})
	if err != nil {
		t.Fatal(err)
	}
	jobState(t, e, succeeded, bus.JobSucceeded)
	jobState(t, e, dead, bus.JobDead)
	jobState(t, e, cancelled, bus.JobCancelled)

	c := browser(t)
	page := func(id string) (string, string) {
		t.Helper()
		code, full, _ := do(t, c, "GET", e.url+"/jetfleet/jobs/"+url.PathEscape(id), nil)
		fcode, frag, _ := do(t, c, "GET", e.url+"/jetfleet/fragments/jobs/"+url.PathEscape(id), nil)
		if code != http.StatusOK || fcode != http.StatusOK {
			t.Fatalf("job %s: page %d, fragment %d", id, code, fcode)
		}
		return full, frag
	}
	full, frag := page(waiting)
	if !strings.Contains(full, "<script") || !strings.Contains(full, `data-live="/jetfleet/fragments/jobs/`) || strings.Contains(frag, "data-live-end") {
		t.Errorf("a ready job's page does not refresh, or its fragment stops the refresh")
	}
	for _, id := range []string{succeeded, dead, cancelled} {
		full, frag := page(id)
		if strings.Contains(full, "<script") || !strings.Contains(frag, "data-live-end") {
			t.Errorf("job %s, finished: its page refreshes (script %v) or its fragment does not stop the refresh (%v)",
				id, strings.Contains(full, "<script"), strings.Contains(frag, "data-live-end"))
		}
	}
	code, full, _ := do(t, c, "GET", e.url+"/jetfleet/jobs/nosuch", nil)
	if code != http.StatusNotFound || strings.Contains(full, "<script") || strings.Contains(full, "data-live=\"/") {
		t.Errorf("an unknown job's page: %d, with a refresh %v; want 404 without", code, strings.Contains(full, "<script"))
	}
}

// hrefs are the links of a page, as a browser reads them.
func hrefs(page string) []string {
	var out []string
	for _, m := range regexp.MustCompile(`href="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		out = append(out, html.UnescapeString(m[1]))
	}
	return out
}

// linkTo is the link of page to the jobs (or failed jobs) of name, by
// the filter key; "" when there is none.
func linkTo(t *testing.T, page, path, key, name string) string {
	t.Helper()
	for _, h := range hrefs(page) {
		u, err := url.Parse(h)
		if err != nil || u.Path != path {
			continue
		}
		if raw := u.Query().Get(key); raw == name || strings.Contains(raw, url.QueryEscape(name)) {
			return h
		}
	}
	return ""
}

// TestFilterLinksAreEscapedOnce: the links of the job kinds page, a job's
// page and a failed job's page to the jobs of a queue, kind or tag decode
// back to its name, and lead to a listing; the kinds page's "(unknown)",
// which no listing takes, is text, not a link.
func TestFilterLinksAreEscapedOnce(t *testing.T) {
	e := newEnv(t, dashboard.Config{Open: true})
	ctx := context.Background()
	s := metrics.NewSampler(e.js, metrics.SamplerConfig{Interval: time.Hour})
	s.LimitKinds([]string{"jetfleet-noop"})
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.Run(sctx) })
	waitFor(t, "the first sample", func() bool { _, err := e.js.Stream(ctx, metrics.SamplesStream); return err == nil })
	time.Sleep(100 * time.Millisecond)
	s.Observe("default", "jetfleet-noop", workers.Succeeded)
	s.Observe("default", "made-up-kind", workers.Succeeded)
	stop() // publishes the last sample
	wg.Wait()
	id, err := e.d.Dispatch(ctx, workers.Noop{}, bus.OnQueue("high"), bus.Tags("user:7", "a&b=c?d#e"))
	if err != nil {
		t.Fatal(err)
	}
	e.deadLetter(t, "default", 1)
	failed, err := e.in.FailedJobs(ctx, bus.FailedFilter{})
	if err != nil || len(failed) != 1 {
		t.Fatalf("failed jobs: %v %v", failed, err)
	}

	c := browser(t)
	_, kinds, _ := do(t, c, "GET", e.url+"/jetfleet/kinds", nil)
	_, job, _ := do(t, c, "GET", e.url+"/jetfleet/jobs/"+url.PathEscape(id), nil)
	_, dlq, _ := do(t, c, "GET", e.url+"/jetfleet/failed/"+url.PathEscape(failed[0].ID), nil)
	for _, l := range []struct{ what, page, path, key, name string }{
		{"kinds page", kinds, "/jetfleet/jobs", "kind", "jetfleet-noop"},
		{"job page", job, "/jetfleet/jobs", "queue", "high"},
		{"job page", job, "/jetfleet/jobs", "kind", "jetfleet-noop"},
		{"job page", job, "/jetfleet/jobs", "tag", "user:7"},
		{"job page", job, "/jetfleet/jobs", "tag", "a&b=c?d#e"},
		{"failed job page", dlq, "/jetfleet/failed", "queue", "default"},
	} {
		h := linkTo(t, l.page, l.path, l.key, l.name)
		if h == "" {
			t.Errorf("%s: no link to the %s %s", l.what, l.key, l.name)
			continue
		}
		u, _ := url.Parse(h)
		if got := u.Query().Get(l.key); got != l.name {
			t.Errorf("%s: the link %s names %s %q, want %q", l.what, h, l.key, got, l.name)
			continue
		}
		if code, _, _ := do(t, c, "GET", e.url+h, nil); code != http.StatusOK {
			t.Errorf("%s: the link %s answers %d", l.what, h, code)
		}
	}
	if !strings.Contains(kinds, `<tr data-kind="(unknown)">`) {
		t.Fatalf("the kinds page has no (unknown) row:\n%s", kinds)
	}
	if h := linkTo(t, kinds, "/jetfleet/jobs", "kind", "(unknown)"); h != "" {
		t.Errorf("the kinds page links (unknown), which no listing takes, to %s", h)
	}
	if !strings.Contains(kinds, `<th scope="row">(unknown)</th>`) {
		t.Errorf("the kinds page does not show (unknown) as text")
	}
}

// TestTagsOutsideTheRuleAreText: a job published without bus whose tags
// break the tag rule (a space, a '.', markup) runs like any other; the
// jobs list and its page show those tags as text, not as links to a
// listing that would refuse them, and link the tags that keep the rule.
func TestTagsOutsideTheRuleAreText(t *testing.T) {
	e := newEnv(t, dashboard.Config{Open: true})
	msg := &nats.Msg{Subject: bus.JobSubject("default", "jetfleet-noop") + ".raw-tags", Data: []byte("{}"),
		Header: nats.Header{bus.HeaderMsgID: {"raw-tags"}, bus.HeaderTags: {"x y,a.b,<script>,user:7"}}}
	if _, err := e.js.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	c := browser(t)
	_, list, _ := do(t, c, "GET", e.url+"/jetfleet/jobs?state=ready", nil)
	_, page, _ := do(t, c, "GET", e.url+"/jetfleet/jobs/raw-tags", nil)
	for what, p := range map[string]string{"jobs list": list, "job page": page} {
		if !strings.Contains(p, "x y") || !strings.Contains(p, "a.b") || !strings.Contains(p, "&lt;script&gt;") {
			t.Fatalf("%s does not show the tags:\n%s", what, p)
		}
		for _, bad := range []string{"x y", "a.b", "<script>"} {
			if h := linkTo(t, p, "/jetfleet/jobs", "tag", bad); h != "" {
				code, _, _ := do(t, c, "GET", e.url+h, nil)
				t.Errorf("%s links the tag %q to %s (%d)", what, bad, h, code)
			}
		}
		if h := linkTo(t, p, "/jetfleet/jobs", "tag", "user:7"); h == "" {
			t.Errorf("%s does not link the tag user:7", what)
		}
	}
}

// TestListsSayWhereTheyStop: with more ready jobs than the jobs page
// shows, it says so and names the command that lists more; the failed
// jobs' last page (and any page asked for past it) says older ones exist
// and how to list them.
func TestListsSayWhereTheyStop(t *testing.T) {
	e := newEnv(t, dashboard.Config{Open: true, PageSize: 1})
	ctx := context.Background()
	params := make([]bus.DispatchManyParams, 51)
	for i := range params {
		params[i] = bus.DispatchManyParams{Args: workers.Noop{}, Opts: []bus.Option{bus.OnQueue("high")}}
	}
	if _, err := e.d.DispatchMany(ctx, params[:50]...); err != nil {
		t.Fatal(err)
	}
	c := browser(t)
	_, list, _ := do(t, c, "GET", e.url+"/jetfleet/jobs?state=ready&queue=high", nil)
	if strings.Count(list, "<tr data-job=") != 50 || strings.Contains(list, "data-more") {
		t.Fatalf("50 ready jobs: %d rows, a note of more %v; want 50 and none", strings.Count(list, "<tr data-job="), strings.Contains(list, "data-more"))
	}
	if _, err := e.d.DispatchMany(ctx, params[50:]...); err != nil {
		t.Fatal(err)
	}
	_, list, _ = do(t, c, "GET", e.url+"/jetfleet/jobs?state=ready&queue=high", nil)
	if n := strings.Count(list, "<tr data-job="); n != 50 || !strings.Contains(list, "<code>jetfleet queue jobs --state ready --queue high --limit 1000</code>") {
		t.Errorf("51 ready jobs: %d rows, and no note naming the command that lists more", n)
	}

	e.deadLetter(t, "default", 401)
	for _, p := range []string{"399", "400", "401"} {
		_, page, _ := do(t, c, "GET", e.url+"/jetfleet/failed?page="+p, nil)
		note := strings.Contains(page, "Page 400 is the last the dashboard shows") && strings.Contains(page, "<code>jetfleet queue failed --limit 0</code>")
		if want := p != "399"; note != want {
			t.Errorf("failed jobs page %s: a note that older ones are not shown %v, want %v", p, note, want)
		}
	}
	_, page, _ := do(t, c, "GET", e.url+"/jetfleet/failed?queue=default&page=400", nil)
	if !strings.Contains(page, "<code>jetfleet queue failed --queue default --limit 0</code>") {
		t.Errorf("the last page of a filter names no command of that filter")
	}
}

// TestNoticeShowsOnlyACount: a link to the jobs page with done=retried and
// any n but a count shows no banner; with a count it does.
func TestNoticeShowsOnlyACount(t *testing.T) {
	e := newEnv(t, dashboard.Config{Open: true})
	c := browser(t)
	for n, want := range map[string]bool{"3": true, "0": true, "Call 555-0100 now": false, "-1": false, "<b>7</b>": false, "": false} {
		_, page, _ := do(t, c, "GET", e.url+"/jetfleet/jobs?done=retried&n="+url.QueryEscape(n), nil)
		if got := strings.Contains(page, `class="notice"`); got != want {
			t.Errorf("n=%q: banner %v, want %v", n, got, want)
		}
	}
}
