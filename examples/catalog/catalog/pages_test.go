package catalog_test

import (
	"bytes"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
)

// TestCatalogHTMLForms is the browser's path with no JavaScript: plain form
// posts carrying the _token field, each answered with a redirect to a page;
// the upload form sends _token before the files, as the page lays it out.
func TestCatalogHTMLForms(t *testing.T) {
	a := startApp(t, false) // the worker starts once "processing" was seen
	c := ct.NewClient(t, a.url)
	browser := http.Header{"Accept": {"text/html,application/xhtml+xml"}}
	form := func(path string, v url.Values) *http.Response {
		t.Helper()
		h := browser.Clone()
		h.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, body := c.Do(http.MethodPost, path, strings.NewReader(v.Encode()), h)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("POST %s: %d %s", path, resp.StatusCode, body)
		}
		return resp
	}
	page := func(path string, want ...string) string {
		t.Helper()
		resp, body := c.Do(http.MethodGet, path, nil, browser)
		for _, w := range want {
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), w) {
				t.Fatalf("GET %s (%d) lacks %q:\n%s", path, resp.StatusCode, w, body)
			}
		}
		return string(body)
	}

	page("/", `action="/login"`)
	form("/login", url.Values{"name": {"ann"}})
	home := page("/", "New item", "ann")
	token := regexp.MustCompile(`name="_token" value="([^"]+)"`).FindStringSubmatch(home)[1]

	if loc := form("/items", url.Values{"_token": {token}, "name": {"Lamp"}, "description": {"brass"}}).Header.Get("Location"); loc != "/view/items/1" {
		t.Fatalf("after creating: redirected to %q", loc)
	}
	page("/view/items/1", "<h2>Lamp</h2>", `enctype="multipart/form-data"`)

	// An upload form sent without its token gets a page that names the
	// status (net/http names no 419).
	var noToken bytes.Buffer
	nw := multipart.NewWriter(&noToken)
	nf, _ := nw.CreateFormFile("images", "desk.png")
	nf.Write(ct.PNG(8, 8))
	nw.Close()
	nh := browser.Clone()
	nh.Set("Content-Type", nw.FormDataContentType())
	if resp, b := c.Do(http.MethodPost, "/items/1/images", &noToken, nh); resp.StatusCode != 419 ||
		!strings.Contains(string(b), "<title>419 Page Expired</title>") {
		t.Errorf("an upload form without its CSRF token: %d %s", resp.StatusCode, b)
	}

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	mw.WriteField("_token", token)
	fw, _ := mw.CreateFormFile("images", "lamp.png")
	fw.Write(ct.PNG(320, 240))
	mw.Close()
	h := browser.Clone()
	h.Set("Content-Type", mw.FormDataContentType())
	resp, b := c.Do(http.MethodPost, "/items/1/images", &body, h)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/view/items/1" {
		t.Fatalf("upload form: %d %s", resp.StatusCode, b)
	}
	if p := page("/view/items/1", "processing"); !strings.Contains(p, `http-equiv="refresh"`) {
		t.Errorf("the page does not reload while processing:\n%s", p)
	}
	runWorker(t, a.js, a.cat)
	c.WaitImages(1, 30*time.Second, "lamp.png")
	if p := page("/view/items/1", `src="/items/1/images/lamp.png?size=160"`); strings.Contains(p, `http-equiv="refresh"`) {
		t.Errorf("the page still reloads when every image is ready")
	}

	form("/logout", url.Values{"_token": {token}})
	page("/", `action="/login"`)
}
