package sessions_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/jetfleet/jetfleet/sessions"
)

func TestCSRFAcceptsTheSessionTokenAndRejectsEverythingElse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	app := e.sm.Middleware(e.sm.CSRF(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "token="+sessions.CSRFToken(r.Context()))
	})))
	c := newClient()
	page := c.do(app, c.request(http.MethodGet, "/form", nil))
	if page.Code != http.StatusOK {
		t.Fatalf("GET = %d", page.Code)
	}
	token := strings.TrimPrefix(page.Body.String(), "token=")
	form := func(v string) *http.Request {
		r := c.request(http.MethodPost, "/form", strings.NewReader(url.Values{"_token": {v}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return r
	}
	header := func(method, v string) *http.Request {
		r := c.request(method, "/api", nil)
		r.Header.Set("X-CSRF-Token", v)
		return r
	}
	cases := []struct {
		name       string
		req        *http.Request
		wantStatus int
		wantBody   string
	}{
		{"form field", form(token), 200, "token="},
		{"header", header(http.MethodDelete, token), 200, "token="},
		{"HEAD is safe", c.request(http.MethodHead, "/", nil), 200, ""},
		{"missing", c.request(http.MethodPost, "/form", nil), 419, "419 Page Expired: no CSRF token: send it in the X-CSRF-Token header or the _token form field"},
		{"wrong form field", form(token[:42] + "x"), 419, "419 Page Expired: the CSRF token does not match this session"},
		{"wrong header", header(http.MethodPut, "nope"), 419, "the CSRF token does not match"},
		{"another session's token", header(http.MethodPatch, otherToken(t, app)), 419, "does not match"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := c.do(app, tc.req)
			if w.Code != tc.wantStatus || !strings.Contains(w.Body.String(), tc.wantBody) {
				t.Errorf("%s %s = %d %q, want %d containing %q", tc.req.Method, tc.req.URL, w.Code, w.Body, tc.wantStatus, tc.wantBody)
			}
		})
	}
}

func otherToken(t *testing.T, app http.Handler) string {
	t.Helper()
	c := newClient()
	return strings.TrimPrefix(c.do(app, c.request(http.MethodGet, "/", nil)).Body.String(), "token=")
}

func TestCSRFRejectsAfterRenewAndWithoutASession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{CSRFFailureStatus: http.StatusForbidden})
	app := e.sm.Middleware(e.sm.CSRF(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})))
	c := newClient()
	var old string
	c.run(e.sm, func(ctx context.Context) { old = sessions.CSRFToken(ctx) })
	c.run(e.sm, func(ctx context.Context) { must(t, sessions.RenewToken(ctx)) })
	r := c.request(http.MethodPost, "/", nil)
	r.Header.Set("X-CSRF-Token", old)
	if w := c.do(app, r); w.Code != http.StatusForbidden || !strings.HasPrefix(w.Body.String(), "403 Forbidden: the CSRF token does not match") {
		t.Errorf("old token after RenewToken = %d %q, want 403", w.Code, w.Body)
	}
	fresh := newClient()
	r = fresh.request(http.MethodPost, "/", nil)
	r.Header.Set("X-CSRF-Token", old)
	if w := fresh.do(app, r); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "no CSRF token (it may have expired)") {
		t.Errorf("POST without a session = %d %q, want 403", w.Code, w.Body)
	}
	bare := e.sm.CSRF(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	if w := fresh.do(bare, fresh.request(http.MethodPost, "/", nil)); w.Code != 500 || !strings.Contains(w.Body.String(), "Manager.Middleware") {
		t.Errorf("CSRF outside Middleware = %d %q, want a 500 that says so", w.Code, w.Body)
	}
}

// hugeBody is a multipart form whose file part holds size bytes, after a
// _token field of token (none when ""), read through a counter.
type hugeBody struct {
	io.Reader
	read int64
}

func (b *hugeBody) Read(p []byte) (int, error) {
	n, err := b.Reader.Read(p)
	b.read += int64(n)
	return n, err
}

func multipartRequest(c *client, token string, size int64) (*http.Request, *hugeBody) {
	boundary := "jetfleet-test-boundary"
	head := ""
	if token != "" {
		head = "--" + boundary + "\r\nContent-Disposition: form-data; name=\"_token\"\r\n\r\n" + token + "\r\n"
	}
	head += "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n"
	body := &hugeBody{Reader: io.MultiReader(strings.NewReader(head), io.LimitReader(zeros{}, size), strings.NewReader("\r\n--"+boundary+"--\r\n"))}
	r := c.request(http.MethodPost, "/upload", body)
	r.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
	return r, body
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestCSRFBoundsTheBodyItReads: a request without a session is refused
// before its body is read; a form that carries its token in _token may
// have at most CSRFMaxFormBytes (a larger one gets 413, the rest of it
// unread); a small multipart form with _token passes, and a large upload
// with the token in the header reaches the handler with its body unread.
func TestCSRFBoundsTheBodyItReads(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	var handlerRead int64
	app := e.sm.Middleware(e.sm.CSRF(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, sessions.CSRFToken(r.Context()))
			return
		}
		handlerRead, _ = io.Copy(io.Discard, r.Body)
	})))
	const big = 100 << 20

	stranger := newClient()
	r, body := multipartRequest(stranger, "made-up", big)
	if w := stranger.do(app, r); w.Code != sessions.StatusPageExpired || body.read > 0 {
		t.Errorf("POST of 100 MiB without a session = %d %q after reading %d bytes, want 419 before reading any", w.Code, w.Body, body.read)
	}

	c := newClient()
	token := c.do(app, c.request(http.MethodGet, "/", nil)).Body.String()
	r, body = multipartRequest(c, token, big)
	if w := c.do(app, r); w.Code != http.StatusRequestEntityTooLarge || !strings.Contains(w.Body.String(), "X-CSRF-Token header") || body.read > 2*sessions.CSRFMaxFormBytes {
		t.Errorf("POST of a 100 MiB form with _token = %d %q after reading %d bytes, want 413 naming the header, at most %d read", w.Code, w.Body, body.read, 2*sessions.CSRFMaxFormBytes)
	}
	r, _ = multipartRequest(c, token, 64<<10)
	if w := c.do(app, r); w.Code != http.StatusOK {
		t.Errorf("POST of a 64 KiB multipart form with _token = %d %q, want 200", w.Code, w.Body)
	}
	r, _ = multipartRequest(c, "", big)
	r.Header.Set(sessions.CSRFHeader, token)
	if w := c.do(app, r); w.Code != http.StatusOK || handlerRead < big {
		t.Errorf("POST of 100 MiB with the token in the header = %d %q, handler read %d bytes; want 200 and the whole body to the handler", w.Code, w.Body, handlerRead)
	}
}
