package dashboard_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/jetfleet/jetfleet/dashboard"
)

// TestWithoutCredentialsItIsNotThere: in production mode with no token and
// no basic-auth user, every dashboard URL answers 404, GET or POST, and the
// rest of the mux is untouched.
func TestWithoutCredentialsItIsNotThere(t *testing.T) {
	e := newEnv(t, dashboard.Config{})
	c := browser(t)
	for _, u := range []string{"/jetfleet", "/jetfleet/", "/jetfleet/failed", "/jetfleet/fragments/overview", "/jetfleet/anything"} {
		if code, _, _ := do(t, c, "GET", e.url+u, nil); code != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", u, code)
		}
	}
	if code, _, _ := do(t, c, "POST", e.url+"/jetfleet/queues/default/pause", url.Values{}); code != http.StatusNotFound {
		t.Errorf("POST pause = %d, want 404", code)
	}
	if code, body, _ := do(t, c, "GET", e.url+"/", nil); code != 200 || body != "the app" {
		t.Errorf("the app's / = %d %q", code, body)
	}
}

// TestTokenAccess: no credentials or a wrong token (bearer or ?token=) is
// 401; the right bearer token is served; the right ?token= sets a cookie
// and redirects to the same page without the token, which the cookie then
// opens.
func TestTokenAccess(t *testing.T) {
	e := newEnv(t, dashboard.Config{Token: "s3cret-token-0123456789"})
	c := browser(t)
	code, _, resp := do(t, c, "GET", e.url+"/jetfleet", nil)
	if code != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no credentials: %d, WWW-Authenticate %q; want 401 with a Bearer challenge", code, resp.Header.Get("WWW-Authenticate"))
	}
	if code, _, _ := do(t, c, "GET", e.url+"/jetfleet", nil, "Authorization", "Bearer wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong bearer token: %d, want 401", code)
	}
	if code, _, _ := do(t, c, "GET", e.url+"/jetfleet/failed?token=wrong", nil); code != http.StatusUnauthorized {
		t.Errorf("wrong ?token=: %d, want 401", code)
	}
	if code, body, _ := do(t, c, "GET", e.url+"/jetfleet", nil, "Authorization", "Bearer s3cret-token-0123456789"); code != 200 || !strings.Contains(body, "<h1>Overview</h1>") {
		t.Errorf("right bearer token: %d", code)
	}
	code, _, resp = do(t, c, "GET", e.url+"/jetfleet/failed?queue=high&token=s3cret-token-0123456789", nil)
	if code != http.StatusSeeOther || resp.Header.Get("Location") != "/jetfleet/failed?queue=high" {
		t.Fatalf("right ?token=: %d to %q, want 303 to /jetfleet/failed?queue=high", code, resp.Header.Get("Location"))
	}
	for _, ck := range resp.Cookies() {
		if strings.Contains(ck.Value, "s3cret-token-0123456789") {
			t.Errorf("cookie %s holds the token itself", ck.Name)
		}
	}
	if code, body, _ := do(t, c, "GET", e.url+"/jetfleet/failed?queue=high", nil); code != 200 || !strings.Contains(body, "<h1>Failed jobs</h1>") {
		t.Errorf("with the cookie: %d", code)
	}
}

// TestBasicAuthAccess: wrong basic credentials are 401 with a Basic
// challenge (so a browser asks); the right ones are served.
func TestBasicAuthAccess(t *testing.T) {
	e := newEnv(t, dashboard.Config{User: "ops", Password: "pw-0123456789abcdef"})
	c := browser(t)
	req, _ := http.NewRequest("GET", e.url+"/jetfleet", nil)
	req.SetBasicAuth("ops", "nope")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("wrong password: %d, %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	req.SetBasicAuth("ops", "pw-0123456789abcdef")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("right credentials: %d", resp.StatusCode)
	}
}

// TestPostNeedsCSRF: an authorized POST without the CSRF token, or with a
// forged one, is 403 and changes nothing; with the page's token it pauses
// the queue and redirects back with a notice.
func TestPostNeedsCSRF(t *testing.T) {
	e := newEnv(t, dashboard.Config{Token: "tok-0123456789abcdef"})
	c := browser(t)
	auth := []string{"Authorization", "Bearer tok-0123456789abcdef"}
	pause := e.url + "/jetfleet/queues/default/pause"
	if code, _, _ := do(t, c, "POST", pause, url.Values{}, auth...); code != http.StatusForbidden {
		t.Errorf("POST without CSRF: %d, want 403", code)
	}
	_, page, _ := do(t, c, "GET", e.url+"/jetfleet", nil, auth...)
	token := csrfOf(t, page)
	if code, _, _ := do(t, c, "POST", pause, url.Values{"csrf": {token + "x"}}, auth...); code != http.StatusForbidden {
		t.Errorf("POST with a forged CSRF token: %d, want 403", code)
	}
	other := browser(t) // another browser: its cookie does not match the token
	if code, _, _ := do(t, other, "POST", pause, url.Values{"csrf": {token}}, auth...); code != http.StatusForbidden {
		t.Errorf("POST with another browser's token: %d, want 403", code)
	}
	if paused, _ := e.in.Paused(context.Background()); paused["default"] {
		t.Fatal("a refused POST paused the queue")
	}
	code, _, resp := do(t, c, "POST", pause, url.Values{"csrf": {token}, "back": {"/jetfleet"}}, auth...)
	if code != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/jetfleet?") {
		t.Fatalf("POST with CSRF: %d to %q", code, resp.Header.Get("Location"))
	}
	if paused, _ := e.in.Paused(context.Background()); !paused["default"] {
		t.Fatal("the queue is not paused")
	}
	_, page, _ = do(t, c, "GET", e.url+resp.Header.Get("Location"), nil, auth...)
	if !strings.Contains(page, "Paused queue default") {
		t.Error("no notice after pausing")
	}
	if code, _, resp := do(t, c, "POST", pause, url.Values{"csrf": {token}, "back": {"https://evil.example/"}}, auth...); code != http.StatusSeeOther || strings.Contains(resp.Header.Get("Location"), "evil") {
		t.Errorf("back to another site: %d to %q", code, resp.Header.Get("Location"))
	}
}

// TestOpenModeStillNeedsCSRF: an open dashboard (jetfleet up) serves pages
// without credentials, with restrictive security headers, and still
// refuses a POST without the CSRF token.
func TestOpenModeStillNeedsCSRF(t *testing.T) {
	e := newEnv(t, dashboard.Config{Open: true})
	c := browser(t)
	code, _, resp := do(t, c, "GET", e.url+"/jetfleet", nil)
	if code != 200 {
		t.Fatalf("open dashboard: %d", code)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "script-src 'nonce-") || resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("security headers: CSP %q, Referrer-Policy %q", csp, resp.Header.Get("Referrer-Policy"))
	}
	if code, _, _ := do(t, c, "POST", e.url+"/jetfleet/queues/default/pause", url.Values{}); code != http.StatusForbidden {
		t.Errorf("POST without CSRF: %d, want 403", code)
	}
}

// TestOpenModeAnswersOnlyLoopbackHosts: an open dashboard refuses a
// request that names another host (a page whose name was rebound to
// 127.0.0.1 would send its own), so such a page can neither read it nor
// take its CSRF token to pause a queue; localhost and loopback addresses,
// with or without a port, are served.
func TestOpenModeAnswersOnlyLoopbackHosts(t *testing.T) {
	e := newEnv(t, dashboard.Config{Open: true})
	c := browser(t)
	get := func(host string) (int, string) {
		t.Helper()
		req, err := http.NewRequest("GET", e.url+"/jetfleet", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, host := range []string{"evil.example.com", "evil.example.com:8080", "127.0.0.1.nip.io", "10.0.0.1:8080", "localhost.evil.example"} {
		if code, body := get(host); code != http.StatusForbidden || !strings.Contains(body, "JETFLEET_DASHBOARD_TOKEN") || strings.Contains(body, `name="csrf"`) {
			t.Errorf("Host %s: %d %.80q, want 403 naming JETFLEET_DASHBOARD_TOKEN and no page", host, code, body)
		}
	}
	for _, host := range []string{"localhost", "localhost:8080", "127.0.0.1:8080", "127.0.0.2", "[::1]:8080", "app.localhost:8080", "LOCALHOST."} {
		if code, _ := get(host); code != http.StatusOK {
			t.Errorf("Host %s: %d, want 200", host, code)
		}
	}
}

// TestShortSecretsAreRefused: a token or password under 16 characters is
// a start-up error that names the setting and not the secret.
func TestShortSecretsAreRefused(t *testing.T) {
	for _, cfg := range []dashboard.Config{{Token: "short-tok3n"}, {User: "ops", Password: "short-passw0rd"}} {
		_, err := dashboard.New(nil, cfg)
		if err == nil || !strings.Contains(err.Error(), "at least 16") || strings.Contains(err.Error(), "short-") {
			t.Errorf("New with a short secret: %v; want an error asking for 16 characters, without the secret", err)
		}
	}
}

// TestWrongGuessesAreSlowedDown: five wrong tokens from one address get
// 401; the sixth locks the address out (429 with Retry-After), and while
// it is locked out even the right token is refused unchecked. A request
// with no credentials at all is no guess.
func TestWrongGuessesAreSlowedDown(t *testing.T) {
	const token = "right-token-0123456789"
	e := newEnv(t, dashboard.Config{Token: token})
	c := browser(t)
	for range 3 {
		if code, _, _ := do(t, c, "GET", e.url+"/jetfleet", nil); code != http.StatusUnauthorized {
			t.Fatalf("no credentials: %d, want 401", code)
		}
	}
	for i := range 5 {
		if code, _, _ := do(t, c, "GET", e.url+"/jetfleet", nil, "Authorization", "Bearer guess-"+strconv.Itoa(i)); code != http.StatusUnauthorized {
			t.Fatalf("wrong guess %d: %d, want 401", i+1, code)
		}
	}
	code, _, resp := do(t, c, "GET", e.url+"/jetfleet?token=guess-6", nil)
	if code != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("sixth wrong guess: %d, Retry-After %q; want 429 with Retry-After", code, resp.Header.Get("Retry-After"))
	}
	if code, _, _ := do(t, c, "GET", e.url+"/jetfleet", nil, "Authorization", "Bearer "+token); code != http.StatusTooManyRequests {
		t.Fatalf("the right token while locked out: %d, want 429", code)
	}
}

// TestStaleLoginCookieCountsOnce: a login cookie of an earlier token (the
// token changed while a tab was open) is a wrong guess, and its 401 tells
// the browser to drop it, so the requests that follow carry no
// credentials and lock no one out; the new token is then served.
func TestStaleLoginCookieCountsOnce(t *testing.T) {
	const oldToken, newToken = "the-old-token-0123456789", "the-new-token-0123456789"
	old := newEnv(t, dashboard.Config{Token: oldToken})
	e := newEnv(t, dashboard.Config{Token: newToken})
	c := browser(t) // one jar for both servers: cookies are per host, not port
	if code, _, _ := do(t, c, "GET", old.url+"/jetfleet?token="+oldToken, nil); code != http.StatusSeeOther {
		t.Fatalf("sign in with the old token: %d, want 303", code)
	}
	code, _, resp := do(t, c, "GET", e.url+"/jetfleet/fragments/overview", nil)
	dropped := false
	for _, ck := range resp.Cookies() {
		dropped = dropped || ck.Name == "jetfleet_dashboard_auth" && ck.MaxAge < 0 && ck.Path == "/jetfleet"
	}
	if code != http.StatusUnauthorized || !dropped {
		t.Fatalf("the stale cookie: %d, cookie dropped %v; want 401 dropping it", code, dropped)
	}
	for i := range 10 {
		if code, _, _ := do(t, c, "GET", e.url+"/jetfleet/fragments/overview", nil); code != http.StatusUnauthorized {
			t.Fatalf("refresh %d after the stale cookie: %d, want 401", i+1, code)
		}
	}
	if code, _, _ := do(t, c, "GET", e.url+"/jetfleet", nil, "Authorization", "Bearer "+newToken); code != http.StatusOK {
		t.Fatalf("the new token: %d, want 200", code)
	}
}
