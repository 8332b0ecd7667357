package browsertest_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/jetfleet/jetfleet/internal/browsertest"
)

// The browser runs the page's script: what Eval reads is what the script
// wrote, not the HTML as served.
func TestEvalReadsWhatThePageScriptMade(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`<title>served</title><script>document.title = "scripted"</script>`))
	}))
	defer srv.Close()
	ctx := browsertest.Start(t)
	browsertest.Do(t, ctx, "open the page", chromedp.Navigate(srv.URL))
	if got := browsertest.Eval[string](t, ctx, `document.title`); got != "scripted" {
		t.Fatalf("document.title = %q, want the script's %q", got, "scripted")
	}
}
