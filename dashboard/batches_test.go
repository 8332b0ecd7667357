package dashboard_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/dashboard"
	"github.com/jetfleet/jetfleet/workers"
)

// TestBatchPages: the batches list and a batch's page with its progress
// bar, counts, callbacks and failed job, and the cancel button of a batch
// that waits on a paused queue. No page carries an inline style (the CSP
// would block it).
func TestBatchPages(t *testing.T) {
	e := newEnv(t, dashboard.Config{Open: true})
	ctx := context.Background()
	jobs := []bus.DispatchManyParams{{Args: workers.Noop{}}, {Args: workers.Noop{}}, {Args: workers.Noop{}}, {Args: workers.Fail{Permanent: true}}}
	done, err := e.d.Batch(ctx, jobs, bus.BatchName("import"), bus.Then(workers.Noop{}), bus.Finally(workers.Noop{}))
	if err != nil {
		t.Fatal(err)
	}
	w := workers.New(e.js, workers.Config{Queues: []string{"default"}, Tries: 1})
	workers.RegisterDiagnostics(w)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _ = w.Run(wctx) }()
	waitFor(t, "the batch finished", func() bool {
		st, err := e.in.Batch(ctx, done.ID)
		return err == nil && st.Done()
	})
	if err := e.in.Pause(ctx, "high"); err != nil {
		t.Fatal(err)
	}
	held, err := e.d.Batch(ctx, []bus.DispatchManyParams{{Args: workers.Noop{}, Opts: []bus.Option{bus.OnQueue("high")}}})
	if err != nil {
		t.Fatal(err)
	}

	c := browser(t)
	code, list, _ := do(t, c, "GET", e.url+"/jetfleet/batches", nil)
	for _, want := range []string{`<tr data-batch="` + done.ID + `">`, `<progress max="4" value="4"`, `<span class="badge failed">failed</span>`,
		`<tr data-batch="` + held.ID + `">`, `<progress max="1" value="0"`, `aria-current="page">Batches</a>`} {
		if code != http.StatusOK || !strings.Contains(list, want) {
			t.Fatalf("batches page (%d) lacks %q:\n%s", code, want, list)
		}
	}
	_, page, _ := do(t, c, "GET", e.url+"/jetfleet/batches/"+done.ID, nil)
	for _, want := range []string{`<dd data-count="succeeded">3</dd>`, `<dd data-count="failed">1</dd>`, `<dd data-count="pending">0</dd>`,
		`<tr data-callback="finally"><th scope="row">finally</th><td>` + done.ID + `-finally</td><td>default</td><td>jetfleet-noop</td><td>yes</td>`,
		`<tr data-callback="then">`, `href="/jetfleet/failed/` + done.ID + `-3"`} {
		if !strings.Contains(page, want) {
			t.Fatalf("batch page lacks %q:\n%s", want, page)
		}
	}
	if strings.Contains(page, `data-action="cancel"`) {
		t.Fatal("a finished batch offers a cancel button")
	}
	for _, p := range []string{list, page} {
		if strings.Contains(p, " style=") {
			t.Fatal("a batch page carries an inline style attribute, which the CSP blocks")
		}
	}

	_, heldPage, _ := do(t, c, "GET", e.url+"/jetfleet/batches/"+held.ID, nil)
	if !strings.Contains(heldPage, `data-action="cancel"`) {
		t.Fatalf("a running batch offers no cancel button:\n%s", heldPage)
	}
	code, _, resp := do(t, c, "POST", e.url+"/jetfleet/batches/"+held.ID+"/cancel", url.Values{"csrf": {csrfOf(t, heldPage)}, "back": {"/jetfleet/batches/" + held.ID}})
	if code != http.StatusSeeOther {
		t.Fatalf("cancel: %d", code)
	}
	_, after, _ := do(t, c, "GET", e.url+resp.Header.Get("Location"), nil)
	if !strings.Contains(after, "Cancelled batch "+held.ID) || !strings.Contains(after, `<span class="badge cancelling">cancelling</span>`) {
		t.Fatalf("after cancel:\n%s", after)
	}
	if code, _, _ := do(t, c, "POST", e.url+"/jetfleet/batches/"+done.ID+"/cancel", url.Values{"csrf": {csrfOf(t, heldPage)}}); code != http.StatusBadRequest {
		t.Fatalf("cancelling a finished batch: %d, want 400", code)
	}
	if code, _, _ := do(t, c, "GET", e.url+"/jetfleet/batches/nosuchbatch", nil); code != http.StatusNotFound {
		t.Fatalf("an unknown batch's page: %d, want 404", code)
	}
	if code, frag, _ := do(t, c, "GET", e.url+"/jetfleet/fragments/batches/"+done.ID, nil); code != http.StatusOK || strings.Contains(frag, "<html") || !strings.Contains(frag, "data-count") {
		t.Fatalf("the batch's live fragment: %d\n%s", code, frag)
	}
}
