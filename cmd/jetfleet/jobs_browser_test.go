package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/jetfleet/jetfleet/internal/browsertest"
)

// TestJobsPageInBrowser opens the jobs page of a running `jetfleet up` in
// headless Chromium: a job dispatched while the page is open shows up as
// running, with its progress, without a reload (the live part refreshes
// in place); its own page shows its state, worker, attempt and progress
// bar; a click on Cancel on the jobs page stops it (its worker logs it
// cancelled) and the page shows it cancelled. Every form control has a
// label. It saves screenshots of the jobs page and of the job's page
// (under the test's temporary directory, and $JETFLEET_TEST_ARTIFACTS).
func TestJobsPageInBrowser(t *testing.T) {
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
	// Jobs in other states, for the page to show: succeeded with a
	// result, dead, delayed.
	done := jf("dispatch", "default", "jetfleet-sleep", `{"ms":300}`, "--tag", "user:7")
	jf("dispatch", "default", "jetfleet-fail", `{"message":"smtp: 421 too many connections"}`, "--tries", "1")
	jf("dispatch", "emails", "jetfleet-noop", "{}", "--delay", "10m", "--tag", "user:7")
	eventually(t, 30*time.Second, "the first job succeeded", func() error {
		if r := runJF(t, dir, testEnv(), "", "queue", "job", done); !strings.Contains(r.Stdout, "succeeded") {
			return fmt.Errorf("queue job: %s%s", r.Stdout, r.Stderr)
		}
		return nil
	})

	browsertest.Do(t, ctx, "open the jobs page", chromedp.Navigate(base+"/jobs"), chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`tr[data-job=%q]`, done))))
	checkAccessibility(t, ctx)
	browsertest.Eval[bool](t, ctx, `window.jetfleetMarker = true`)
	id := jf("dispatch", "default", "jetfleet-sleep", `{"ms":60000}`, "--tag", "user:7", "--tag", "order:42")
	row := fmt.Sprintf(`tr[data-job=%q]`, id)
	browsertest.Wait(t, ctx, "the new job listed as running, with its progress, without a reload", fmt.Sprintf(`window.jetfleetMarker === true &&
		!!document.querySelector('%s[data-state="running"] progress')`, row), 20*time.Second)
	browsertest.Eval[bool](t, ctx, `document.activeElement.blur(), true`)
	save(t, ctx, "dashboard-jobs.png")

	browsertest.Do(t, ctx, "open the job's page", chromedp.Navigate(base+"/jobs/"+id), chromedp.WaitVisible(chromedp.CSS(`dd[data-field="state"]`)))
	browsertest.Wait(t, ctx, "the job's page with its progress bar", `!!document.querySelector("progress") &&
		document.querySelector('dd[data-field="state"]').textContent.indexOf("running on") >= 0 &&
		document.querySelector('dd[data-field="attempt"]').textContent.trim() === "1 of 3"`, 20*time.Second)
	save(t, ctx, "dashboard-job.png")

	browsertest.Do(t, ctx, "open the jobs page", chromedp.Navigate(base+"/jobs"), chromedp.WaitVisible(chromedp.CSS(row)))
	submit(t, ctx, "click Cancel", fmt.Sprintf(`button[aria-label="Cancel job %s"]`, id), false)
	if n := browsertest.Eval[string](t, ctx, `document.querySelector(".notice").textContent`); !strings.Contains(n, "Cancelled job "+id) {
		t.Errorf("notice after Cancel: %q", n)
	}
	eventually(t, 10*time.Second, "the worker stopping the job", func() error {
		if !strings.Contains(up.Stderr.String(), `"job_id":"`+id+`"`) || !containsLine(up.Stderr.String(), id, "job cancelled") {
			return fmt.Errorf("no \"job cancelled\" log line for job %s", id)
		}
		return nil
	})
	browsertest.Wait(t, ctx, "the job shown as cancelled", fmt.Sprintf(`!!document.querySelector('%s[data-state="cancelled"]')`, row), 20*time.Second)
	if r := runJF(t, dir, testEnv(), "", "queue", "job", id); !strings.Contains(r.Stdout, "cancelled at") {
		t.Fatalf("queue job after the click: %s%s", r.Stdout, r.Stderr)
	}

	browsertest.Do(t, ctx, "open the succeeded job's page", chromedp.Navigate(base+"/jobs/"+done), chromedp.WaitVisible(chromedp.CSS(`pre[data-field="result"]`)))
	if got := browsertest.Eval[string](t, ctx, `document.querySelector('pre[data-field="result"]').textContent`); !strings.Contains(got, `"slept_ms": 300`) {
		t.Errorf("the succeeded job's result shows %q", got)
	}
	save(t, ctx, "dashboard-job-succeeded.png")
	// The job kinds of the last hour, once the workers' first samples are in.
	// Each try loads the page anew, so no poll runs across a navigation.
	eventually(t, 40*time.Second, "jetfleet-sleep in the job kinds", func() error {
		if _, err := chromedp.Run(ctx, chromedp.Navigate(base+"/kinds")); err != nil {
			return err
		}
		found, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!document.querySelector('tr[data-kind="jetfleet-sleep"]')`))
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("no row for jetfleet-sleep yet")
		}
		return nil
	})
	save(t, ctx, "dashboard-kinds.png")
}

// containsLine reports whether a JSON log holds a line about job id with
// message msg.
func containsLine(log, id, msg string) bool {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `"job_id":"`+id+`"`) && strings.Contains(line, `"message":"`+msg+`"`) {
			return true
		}
	}
	return false
}
