package catalog_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
	"github.com/jetfleet/jetfleet/internal/browsertest"
)

// TestPagesWorkInChromiumUnderTheirPolicy drives the pages in a headless
// Chromium, which enforces their Content-Security-Policy: the inline
// style applies (its nonce matches), the forms post (form-action 'self'),
// and the thumbnail of an upload shows (img-src 'self').
func TestPagesWorkInChromiumUnderTheirPolicy(t *testing.T) {
	ctx := browsertest.Start(t)
	a := startApp(t, true)
	photo := filepath.Join(t.TempDir(), "photo.png")
	if err := os.WriteFile(photo, ct.PNG(320, 240), 0o600); err != nil {
		t.Fatal(err)
	}
	browsertest.Do(t, ctx, "log in", chromedp.Navigate(a.url+"/"), chromedp.SendKeys(chromedp.CSS(`input[name="name"]`), "ann"),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button`)), chromedp.WaitVisible(chromedp.CSS(`textarea[name="description"]`)))
	if got := browsertest.Eval[string](t, ctx, `getComputedStyle(document.body).maxWidth`); got != "832px" {
		t.Fatalf("the page's style does not apply (body max-width %q, want 832px): its nonce is refused", got)
	}
	browsertest.Do(t, ctx, "create an item", chromedp.SendKeys(chromedp.CSS(`input[name="name"]`), "Lamp"),
		chromedp.Click(chromedp.CSS(`form[action="/items"] button`)), chromedp.WaitVisible(chromedp.CSS(`input[type="file"]`)))
	browsertest.Do(t, ctx, "upload a photo", chromedp.SetUploadFiles(chromedp.CSS(`input[type="file"]`), []string{photo}),
		chromedp.Click(chromedp.CSS(`form[enctype="multipart/form-data"] button`)))
	// The page reloads itself (meta refresh) until the thumbnail is made.
	pollJS(t, ctx, "the thumbnail shown", `(function () { var i = document.querySelector(".images img"); return !!i && i.complete && i.naturalWidth === 160; })()`, 30*time.Second)
	if got := browsertest.Eval[string](t, ctx, `getComputedStyle(document.querySelector(".images")).display`); got != "flex" {
		t.Fatalf("the item page's style does not apply (.images display %q)", got)
	}
}

// pollJS waits until a JavaScript expression is true in the page, across
// the page's own reloads.
func pollJS(t *testing.T, ctx context.Context, what, expr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := chromedp.Run(cctx, chromedp.Evaluate[bool](expr))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("browser: %s: not within %s (last error: %v)", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
