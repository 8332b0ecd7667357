package main

// Helpers of the browser test: a headless Chromium driven with chromedp,
// and reading the dashboard's queue table.

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/jetfleet/jetfleet/bus"
)

// submit presses the form button sel (a click, or Enter on it when
// withKeyboard) and waits for the page the form leads to, showing its
// notice. The button is focused first, which holds off the page's live
// refresh (it never replaces the part that has the focus); a refresh that
// replaced the button between finding and focusing it is an error of the
// moment, so that is tried up to three times. The old page is marked, so a
// notice still on it is not taken for the new one.
func submit(t *testing.T, ctx context.Context, what, sel string, withKeyboard bool) {
	t.Helper()
	press := chromedp.Click(chromedp.CSS(sel))
	if withKeyboard {
		press = chromedp.KeyEvent(kb.Enter)
	}
	var err error
	for range 3 {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = chromedp.Do(cctx, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Focus(chromedp.CSS(sel)),
			chromedp.Evaluate[chromedp.Void](`window.jetfleetOldPage = true`), press)
		cancel()
		if err == nil {
			break
		}
		t.Logf("browser: %s: %v (trying again)", what, err)
	}
	if err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
	// While the browser navigates, evaluating fails ("target navigated"):
	// keep asking until the new page answers.
	deadline := time.Now().Add(20 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := chromedp.Run(cctx, chromedp.Evaluate[bool](`window.jetfleetOldPage !== true && document.readyState === "complete" && !!document.querySelector(".notice")`))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("browser: %s: no new page with a notice after 20s (last error: %v)", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// overflowing is a JavaScript expression naming the elements that reach
// past the right edge of the window.
const overflowing = `Array.from(document.querySelectorAll("body *")).filter(function (e) {
	return e.getBoundingClientRect().right > window.innerWidth + 0.5;
}).slice(0, 8).map(function (e) {
	return e.tagName.toLowerCase() + (e.className && e.className.baseVal === undefined ? "." + e.className : "") +
		" (right " + Math.round(e.getBoundingClientRect().right) + "): " + (e.textContent || "").trim().slice(0, 40);
}).join("; ") || "none found"`

// queueRow is one row of the dashboard's queue table, as the page shows it.
type queueRow struct {
	Queue    string `json:"queue"`
	Ready    string `json:"ready"`
	InFlight string `json:"in_flight"`
	Delayed  string `json:"delayed"`
	Failed   string `json:"failed"`
	Workers  string `json:"workers"`
	Status   string `json:"status"`
}

// readQueueTable reads the queue table of the page now shown.
const readQueueTable = `Array.from(document.querySelectorAll("tr[data-queue]")).map(function (tr) {
  function f(name) { var c = tr.querySelector('[data-field="' + name + '"]'); return c ? c.textContent.trim() : ""; }
  return {queue: tr.dataset.queue, ready: f("ready"), in_flight: f("in_flight"), delayed: f("delayed"),
          failed: f("failed"), workers: f("workers"), status: f("status")};
})`

// statsRows is `jetfleet queue stats --json` in the shape of the table.
func statsRows(t *testing.T, dir string) []queueRow {
	t.Helper()
	r := runJF(t, dir, testEnv(), "", "queue", "stats", "--json")
	if r.Code != 0 {
		t.Fatalf("queue stats --json: exit %d: %s", r.Code, r.Stderr)
	}
	var st bus.Stats
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		t.Fatalf("queue stats --json: %v\n%s", err, r.Stdout)
	}
	var out []queueRow
	for _, q := range st.Queues {
		status := "Running"
		if q.Paused {
			status = "Paused"
		}
		out = append(out, queueRow{
			Queue: q.Queue, Ready: itoa(q.Ready), InFlight: itoa(q.InFlight), Delayed: itoa(q.Delayed),
			Failed: itoa(q.Failed), Workers: itoa(uint64(q.Workers)), Status: status,
		})
	}
	return out
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
