package dashboard_test

// The tests of what only a browser shows: the live refresh script and the
// layout. They drive Debian's headless chromium with chromedp, as
// cmd/jetfleet's browser tests do, against a real NATS server and a real
// HTTP server.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/dashboard"
	"github.com/jetfleet/jetfleet/internal/browsertest"
	"github.com/jetfleet/jetfleet/workers"
)

// switchable is an HTTP server whose dashboard the test swaps (as a
// restart with other settings would) and that counts the requests for
// each path, so a test sees what a page's script asks for.
type switchable struct {
	url  string
	mux  atomic.Pointer[http.ServeMux]
	mu   sync.Mutex
	hits map[string]int
}

// newSwitchable serves dash until the test calls use.
func newSwitchable(t *testing.T, dash *dashboard.Dashboard) *switchable {
	t.Helper()
	s := &switchable{hits: map[string]int{}}
	s.use(dash)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		s.mux.Load().ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	s.url = hs.URL
	return s
}

// use serves dash from now on.
func (s *switchable) use(dash *dashboard.Dashboard) {
	mux := http.NewServeMux()
	dash.Routes(mux)
	s.mux.Store(mux)
}

// count is how many requests path has had.
func (s *switchable) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// newDashboard is a dashboard of e's NATS with cfg, refreshing every
// 100 ms so that a test sees many refreshes in a second.
func newDashboard(t *testing.T, e *env, cfg dashboard.Config) *dashboard.Dashboard {
	t.Helper()
	cfg.Refresh = 100 * time.Millisecond
	dash, err := dashboard.New(e.js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return dash
}

// TestRefreshStopsWhenSignedOutOrGone: a page open in a tab whose login
// cookie went stale (the token changed) stops its refresh at the first
// 401, says so, and so costs its address one wrong guess, not a lockout;
// a page whose dashboard went away (404) stops and says "Not found".
func TestRefreshStopsWhenSignedOutOrGone(t *testing.T) {
	const oldToken, newToken = "the-old-token-0123456789", "the-new-token-0123456789"
	e := newEnv(t, dashboard.Config{Open: true})
	old := newDashboard(t, e, dashboard.Config{Token: oldToken})
	srv := newSwitchable(t, old)
	changed := newDashboard(t, e, dashboard.Config{Token: newToken})
	ctx := browsertest.Start(t)
	const frag = "/jetfleet/fragments/overview"
	for _, c := range []struct {
		name string
		then *dashboard.Dashboard
		says string
	}{
		{"token changed", changed, "Signed out: reload the page to sign in again"},
		{"dashboard turned off", newDashboard(t, e, dashboard.Config{}), "Not found"},
	} {
		srv.use(old)
		browsertest.Do(t, ctx, c.name+": sign in", chromedp.Navigate(srv.url+"/jetfleet?token="+oldToken),
			chromedp.WaitVisible(chromedp.CSS(`tr[data-queue="default"]`)))
		browsertest.Wait(t, ctx, c.name+": a refresh", `document.getElementById("updated").textContent.indexOf("Updated") === 0`, 5*time.Second)
		srv.use(c.then)
		asked := srv.count(frag)
		browsertest.Wait(t, ctx, c.name+": the page saying "+c.says, `document.body.textContent.indexOf(`+jsString(c.says)+`) >= 0`, 5*time.Second)
		time.Sleep(time.Second) // ten refresh intervals
		if n := srv.count(frag) - asked; n > 2 {
			t.Errorf("%s: the page asked %d more times for its fragment; want it to stop at the first answer", c.name, n)
		}
	}
	srv.use(changed)
	if code, _, _ := do(t, browser(t), "GET", srv.url+"/jetfleet", nil, "Authorization", "Bearer "+newToken); code != http.StatusOK {
		t.Errorf("the new token from the tab's address: %d, want 200 (not locked out)", code)
	}
}

// jsString quotes s as a JavaScript string literal (s holds no quote or
// backslash).
func jsString(s string) string {
	if strings.ContainsAny(s, `"\`) {
		panic("jsString: " + s)
	}
	return `"` + s + `"`
}

// TestPagesFitAPhone: on a 375 px wide phone the overview, the failed
// jobs and the jobs pages do not pan sideways: their wide tables scroll
// inside their own box, and so does the visually hidden header of their
// action column.
func TestPagesFitAPhone(t *testing.T) {
	e := newEnv(t, dashboard.Config{Open: true})
	e.deadLetter(t, "default", 1)
	if _, err := e.d.Dispatch(context.Background(), workers.Sleep{MS: 1}, bus.OnQueue("high"), bus.Tags("user:7")); err != nil {
		t.Fatal(err)
	}
	srv := newSwitchable(t, newDashboard(t, e, dashboard.Config{Open: true}))
	ctx := browsertest.Start(t)
	const phoneWidth = 375
	browsertest.Do(t, ctx, "phone viewport", chromedp.EmulateViewport(phoneWidth, 800, chromedp.EmulateMobile))
	for _, page := range []struct{ path, row string }{
		{"/jetfleet", `tr[data-queue="default"]`},
		{"/jetfleet/failed", `tr[data-job]`},
		{"/jetfleet/jobs", `tr[data-job]`},
	} {
		browsertest.Do(t, ctx, "open "+page.path, chromedp.Navigate(srv.url+page.path), chromedp.WaitVisible(chromedp.CSS(page.row)))
		// A phone widens its layout viewport to the page (innerWidth
		// follows), so the page is measured against the phone's 375 px.
		if width := browsertest.Eval[int](t, ctx, `document.documentElement.scrollWidth`); width > phoneWidth {
			t.Errorf("%s on a %d px phone is %d px wide; wider than the phone: %s", page.path, phoneWidth, width, browsertest.Eval[string](t, ctx, overflowing))
		}
	}
}

// overflowing is a JavaScript expression naming the elements that reach
// past the right edge of the screen, but for those that scroll in a
// scroll box.
const overflowing = `Array.from(document.querySelectorAll("body *")).filter(function (e) {
	return e.getBoundingClientRect().right > screen.width + 0.5 && (!e.closest(".scroll") || getComputedStyle(e).position === "absolute");
}).slice(0, 8).map(function (e) {
	return e.tagName.toLowerCase() + (e.className && e.className.baseVal === undefined ? "." + e.className : "") +
		" (right " + Math.round(e.getBoundingClientRect().right) + "): " + (e.textContent || "").trim().slice(0, 40);
}).join("; ") || "none outside a scroll box"`

// TestJobPageStopsRefreshingWhenTheJobFinishes: the page of a running job
// refreshes until the job has succeeded, shows it succeeded, and then
// asks for nothing more.
func TestJobPageStopsRefreshingWhenTheJobFinishes(t *testing.T) {
	e := newEnv(t, dashboard.Config{Open: true})
	runWorker(t, e, workers.Config{Queues: []string{"default"}})
	srv := newSwitchable(t, newDashboard(t, e, dashboard.Config{Open: true}))
	ctx := browsertest.Start(t)
	id, err := e.d.Dispatch(context.Background(), workers.Sleep{MS: 2500})
	if err != nil {
		t.Fatal(err)
	}
	jobState(t, e, id, bus.JobRunning)
	browsertest.Do(t, ctx, "open the job's page", chromedp.Navigate(srv.url+"/jetfleet/jobs/"+id), chromedp.WaitVisible(chromedp.CSS(`dd[data-field="state"]`)))
	if state := browsertest.Eval[string](t, ctx, `document.querySelector('dd[data-field="state"]').textContent`); !strings.Contains(state, "running") {
		t.Fatalf("the job's page shows %q, want it running", state)
	}
	browsertest.Wait(t, ctx, "the job shown succeeded", `document.querySelector('dd[data-field="state"]').textContent.indexOf("succeeded") >= 0`, 10*time.Second)
	frag := "/jetfleet/fragments/jobs/" + id
	asked := srv.count(frag)
	time.Sleep(time.Second) // ten refresh intervals
	if n := srv.count(frag) - asked; n > 1 {
		t.Errorf("the page of the finished job asked %d more times for its fragment; want it to stop", n)
	}
	if got := browsertest.Eval[string](t, ctx, `document.getElementById("updated").textContent`); got != "Finished: no more updates" {
		t.Errorf("the page says %q, want it to say it is not updated any more", got)
	}
}
