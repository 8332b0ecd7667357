package browsertest_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/jetfleet/jetfleet/internal/browsertest"
)

// A test opens a page in chromium and reads what the browser made of it.
func Example() {
	var t testing.T // in a test: its *testing.T
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`<title>jetfleet</title>`))
	}))
	defer srv.Close()
	ctx := browsertest.Start(&t)
	browsertest.Do(&t, ctx, "open the page", chromedp.Navigate(srv.URL))
	_ = browsertest.Eval[string](&t, ctx, `document.title`) // "jetfleet"
}
