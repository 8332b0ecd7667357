package catalog_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
)

// TestPagesWorkInChromiumUnderTheirPolicy drives the pages in a headless
// Chromium, which enforces their Content-Security-Policy: the inline
// style applies (its nonce matches), the forms post (form-action 'self'),
// and the thumbnail of an upload shows (img-src 'self').
func TestPagesWorkInChromiumUnderTheirPolicy(t *testing.T) {
	ctx := newBrowser(t)
	a := startApp(t, true)
	photo := filepath.Join(t.TempDir(), "photo.png")
	if err := os.WriteFile(photo, ct.PNG(320, 240), 0o600); err != nil {
		t.Fatal(err)
	}
	browse(t, ctx, "log in", chromedp.Navigate(a.url+"/"), chromedp.SendKeys(chromedp.CSS(`input[name="name"]`), "ann"),
		chromedp.Click(chromedp.CSS(`form[action="/login"] button`)), chromedp.WaitVisible(chromedp.CSS(`textarea[name="description"]`)))
	if got := evalJS[string](t, ctx, `getComputedStyle(document.body).maxWidth`); got != "832px" {
		t.Fatalf("the page's style does not apply (body max-width %q, want 832px): its nonce is refused", got)
	}
	browse(t, ctx, "create an item", chromedp.SendKeys(chromedp.CSS(`input[name="name"]`), "Lamp"),
		chromedp.Click(chromedp.CSS(`form[action="/items"] button`)), chromedp.WaitVisible(chromedp.CSS(`input[type="file"]`)))
	browse(t, ctx, "upload a photo", chromedp.SetUploadFiles(chromedp.CSS(`input[type="file"]`), []string{photo}),
		chromedp.Click(chromedp.CSS(`form[enctype="multipart/form-data"] button`)))
	// The page reloads itself (meta refresh) until the thumbnail is made.
	pollJS(t, ctx, "the thumbnail shown", `(function () { var i = document.querySelector(".images img"); return !!i && i.complete && i.naturalWidth === 160; })()`, 30*time.Second)
	if got := evalJS[string](t, ctx, `getComputedStyle(document.querySelector(".images")).display`); got != "flex" {
		t.Fatalf("the item page's style does not apply (.images display %q)", got)
	}
}

// newBrowser starts a headless Chromium with a fresh profile, closed at
// cleanup, and returns a context for its first tab. Without Chromium the
// test is skipped, except in CI, which installs it.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed; .ci/run installs it")
		}
		t.Skip("chromium is not installed (apt-get install -y chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "chromium-profile")))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// browse runs browser steps within a minute, failing the test on error.
func browse(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
}

// evalJS evaluates a JavaScript expression in the page.
func evalJS[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("browser: evaluate %s: %v", expr, err)
	}
	return v
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
