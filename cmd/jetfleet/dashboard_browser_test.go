package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/jetfleet/jetfleet/internal/browsertest"
)

// TestDashboardInBrowser opens the dashboard of a running `jetfleet up` in
// headless Chromium: the queue table matches `jetfleet queue stats` and
// refreshes without a reload; clicking Retry on a failed job removes it
// from the list and the job runs; pausing a queue from the page stops the
// workers taking from it, and resuming lets them drain it. It saves a
// screenshot of the overview (and of the phone layout) under the test's
// temporary directory, also copied to $JETFLEET_TEST_ARTIFACTS when set.
func TestDashboardInBrowser(t *testing.T) {
	ctx := browsertest.Start(t)
	up, dir, url := startUp(t, testEnv())
	base := url + "/jetfleet"
	jf := func(args ...string) string {
		t.Helper()
		r := runJF(t, dir, testEnv(), "", args...)
		if r.Code != 0 {
			t.Fatalf("jetfleet %s: exit %d: %s", strings.Join(args, " "), r.Code, r.Stderr)
		}
		return strings.TrimSpace(r.Stdout)
	}

	// A steady state: emails paused with 3 ready jobs, and on default a job
	// that failed for good (it fails until a moment a few seconds away).
	jf("queue", "pause", "emails")
	for range 3 {
		jf("dispatch", "emails", "jetfleet-noop", "{}")
	}
	until := time.Now().Add(6 * time.Second)
	failID := jf("dispatch", "default", "jetfleet-fail", fmt.Sprintf(`{"until":%q}`, until.Format(time.RFC3339Nano)), "--tries", "1")
	eventually(t, 30*time.Second, "the failing job in DLQ", func() error { return expectFailed(statsRows(t, dir), "default", "1") })

	browsertest.Do(t, ctx, "open the overview", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS(`tr[data-queue="emails"]`)))
	matchStats(t, ctx, dir)
	checkAccessibility(t, ctx)

	// The live part refreshes in place: a new job shows without a reload.
	browsertest.Eval[bool](t, ctx, `window.jetfleetMarker = true`)
	jf("dispatch", "emails", "jetfleet-noop", "{}")
	browsertest.Wait(t, ctx, "ready 4 on emails, shown by the auto-refresh", `window.jetfleetMarker === true &&
		document.querySelector('tr[data-queue="emails"] [data-field="ready"]').textContent.trim() === "4"`, 20*time.Second)

	retryFromTheList(t, ctx, up, base, failID, until)
	pauseFromTheOverview(t, ctx, up, dir, base, jf)
	screenshots(t, ctx, base)
}

// expectFailed checks a queue's failed count in stats rows.
func expectFailed(rows []queueRow, queue, want string) error {
	for _, r := range rows {
		if r.Queue == queue && r.Failed == want {
			return nil
		}
	}
	return fmt.Errorf("queue %s does not have %s failed: %+v", queue, want, rows)
}

// matchStats waits until the page's queue table equals `queue stats`.
func matchStats(t *testing.T, ctx context.Context, dir string) {
	t.Helper()
	eventually(t, 20*time.Second, "the dashboard's queue table equal to `jetfleet queue stats --json`", func() error {
		want := statsRows(t, dir)
		got := browsertest.Eval[[]queueRow](t, ctx, readQueueTable)
		if !reflect.DeepEqual(got, want) {
			return fmt.Errorf("dashboard %+v\nqueue stats %+v", got, want)
		}
		return nil
	})
	t.Logf("queue table matches queue stats: %+v", statsRows(t, dir))
}

// checkAccessibility: the first Tab reaches the skip link, every form
// control has a label, every button a name, and the chart a text
// alternative.
func checkAccessibility(t *testing.T, ctx context.Context) {
	t.Helper()
	browsertest.Do(t, ctx, "press Tab", chromedp.KeyEvent(kb.Tab))
	if got := browsertest.Eval[string](t, ctx, `document.activeElement.textContent.trim()`); got != "Skip to content" {
		t.Errorf("the first Tab focuses %q, want the skip link", got)
	}
	unlabelled := browsertest.Eval[int](t, ctx, `Array.from(document.querySelectorAll("input:not([type=hidden]), select")).filter(function (e) { return e.labels.length === 0; }).length +
		Array.from(document.querySelectorAll("button")).filter(function (b) { return !(b.getAttribute("aria-label") || b.textContent.trim()); }).length`)
	if unlabelled != 0 {
		t.Errorf("%d form controls without a label or name", unlabelled)
	}
	if browsertest.Eval[string](t, ctx, `document.documentElement.lang`) != "en" {
		t.Error("the page has no language")
	}
}

// retryFromTheList clicks Retry on the failed job and sees it leave the
// list and succeed.
func retryFromTheList(t *testing.T, ctx context.Context, up *proc, base, id string, until time.Time) {
	t.Helper()
	row := fmt.Sprintf(`tr[data-job=%q]`, id)
	browsertest.Do(t, ctx, "open the failed jobs", chromedp.Navigate(base+"/failed"), chromedp.WaitVisible(chromedp.CSS(row)))
	time.Sleep(time.Until(until)) // from now on the job succeeds
	submit(t, ctx, "click Retry", fmt.Sprintf(`button[aria-label="Retry job %s"]`, id), false)
	if n := browsertest.Eval[string](t, ctx, `document.querySelector(".notice").textContent`); !strings.Contains(n, "Retried 1 job") {
		t.Errorf("notice after Retry: %q", n)
	}
	browsertest.Wait(t, ctx, "the job gone from the list", fmt.Sprintf(`!document.querySelector(%q)`, row), 10*time.Second)
	ran := regexp.MustCompile(`"job_id":"` + regexp.QuoteMeta(id) + `"[^\n]*"message":"job succeeded"`)
	eventually(t, 30*time.Second, "the retried job running to success", func() error {
		if !ran.MatchString(up.Stderr.String()) {
			return fmt.Errorf("no \"job succeeded\" log line for job %s", id)
		}
		return nil
	})
}

// pauseFromTheOverview pauses default with the keyboard on the overview,
// shows that workers leave its jobs while they still run another queue's,
// then resumes it with a click and sees it drained.
func pauseFromTheOverview(t *testing.T, ctx context.Context, up *proc, dir, base string, jf func(...string) string) {
	t.Helper()
	pause := `button[aria-label="Pause queue default"]`
	browsertest.Do(t, ctx, "open the overview", chromedp.Navigate(base))
	submit(t, ctx, "pause default with the keyboard", pause, true)
	browsertest.Wait(t, ctx, "default shown as paused", `document.querySelector('tr[data-queue="default"] [data-field="status"]').textContent.trim() === "Paused"`, 10*time.Second)
	for range 3 {
		jf("dispatch", "default", "jetfleet-noop", "{}")
	}
	// A job on high, dispatched after them, runs: the workers are taking
	// jobs, just not default's.
	highID := jf("dispatch", "high", "jetfleet-noop", "{}")
	eventually(t, 30*time.Second, "the job on high running", func() error {
		if !strings.Contains(up.Stderr.String(), `"job_id":"`+highID+`"`) {
			return fmt.Errorf("job %s on high has not run", highID)
		}
		return nil
	})
	time.Sleep(time.Second)
	matchStats(t, ctx, dir)
	if got := browsertest.Eval[string](t, ctx, `document.querySelector('tr[data-queue="default"] [data-field="ready"]').textContent.trim()`); got != "3" {
		t.Fatalf("ready on paused default = %s, want 3 (a worker took from a paused queue?)", got)
	}
	resume := `button[aria-label="Resume queue default"]`
	submit(t, ctx, "click Resume", resume, false)
	browsertest.Wait(t, ctx, "default drained after resuming", `(function () {
		var tr = document.querySelector('tr[data-queue="default"]');
		return tr.querySelector('[data-field="ready"]').textContent.trim() === "0" &&
			tr.querySelector('[data-field="in_flight"]').textContent.trim() === "0" &&
			tr.querySelector('[data-field="status"]').textContent.trim() === "Running";
	})()`, 30*time.Second)
}

// screenshots saves the overview once its chart has bars (the workers
// publish samples every 10 s), then the phone layout, which must not
// scroll sideways.
func screenshots(t *testing.T, ctx context.Context, base string) {
	t.Helper()
	browsertest.Do(t, ctx, "open the overview", chromedp.Navigate(base))
	browsertest.Wait(t, ctx, "bars in the throughput chart", `document.querySelectorAll("svg.chart rect").length > 0`, 45*time.Second)
	save(t, ctx, "dashboard-overview.png")
	browsertest.Do(t, ctx, "phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(base),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-queue="default"]`)))
	if wide := browsertest.Eval[bool](t, ctx, `document.documentElement.scrollWidth > window.innerWidth`); wide {
		t.Errorf("on a 390px phone the page scrolls sideways (scrollWidth %d, innerWidth %d); wider than the window: %s",
			browsertest.Eval[int](t, ctx, `document.documentElement.scrollWidth`), browsertest.Eval[int](t, ctx, `window.innerWidth`), browsertest.Eval[string](t, ctx, overflowing))
	}
	save(t, ctx, "dashboard-overview-phone.png")
}

// save writes a full-page screenshot under the test's temporary directory
// and logs its path.
func save(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	if dir := os.Getenv("JETFLEET_TEST_ARTIFACTS"); dir != "" {
		kept := filepath.Join(dir, name)
		if err := os.MkdirAll(dir, 0o755); err == nil && os.WriteFile(kept, png, 0o644) == nil {
			t.Logf("screenshot kept: %s", kept)
		}
	}
}
