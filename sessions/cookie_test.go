package sessions_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/sessions"
)

func TestCookieAttributesExactly(t *testing.T) {
	t.Parallel()
	// The fake clock starts at 2030-01-02 03:04:05 UTC.
	cases := []struct {
		name string
		cfg  sessions.Config
		want string // with NAME for the cookie's name, VALUE for its value
	}{
		{"defaults: persistent until the absolute deadline", sessions.Config{},
			"NAME=VALUE; Path=/; Expires=Thu, 03 Jan 2030 03:04:05 GMT; Max-Age=86400; HttpOnly; SameSite=Lax"},
		{"everything configured, expire on close", sessions.Config{ExpireOnClose: true, Cookie: sessions.CookieConfig{
			Name: "sid", Domain: "example.com", Path: "/app", Secure: true, SameSite: http.SameSiteStrictMode, Partitioned: true}},
			"NAME=VALUE; Path=/app; Domain=example.com; HttpOnly; Secure; SameSite=Strict; Partitioned"},
		{"SameSite=None needs Secure", sessions.Config{AbsoluteTimeout: 90 * time.Minute, Cookie: sessions.CookieConfig{Secure: true, SameSite: http.SameSiteNoneMode}},
			"NAME=VALUE; Path=/; Expires=Wed, 02 Jan 2030 04:34:05 GMT; Max-Age=5400; HttpOnly; Secure; SameSite=None"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.cfg)
			c := newClient()
			if tc.cfg.Cookie.Name != "" {
				c.name = tc.cfg.Cookie.Name
			}
			w := c.run(e.sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "k", 1)) })
			assertCookies(t, w.Header(), c, tc.want, true, true)
		})
	}
}

// assertCookies checks that the response sets exactly the session cookie
// (when token) and the revision cookie (when rev) to c's values, each with
// the attributes want, plus the caching headers.
func assertCookies(t *testing.T, h http.Header, c *client, want string, token, rev bool) {
	t.Helper()
	var wants []string
	if token {
		wants = append(wants, fill(want, c.name, c.token))
	}
	if rev {
		if c.rev == "" && c.token != "" {
			t.Errorf("no revision cookie")
		}
		wants = append(wants, fill(want, c.name+"_rev", c.rev))
	}
	if got := h.Values("Set-Cookie"); !slices.Equal(got, wants) {
		t.Errorf("Set-Cookie = %q\n                 want %q", got, wants)
	}
	if got := h.Values("Cache-Control"); len(got) != 1 || got[0] != `no-cache="Set-Cookie"` {
		t.Errorf(`Cache-Control = %q, want [no-cache="Set-Cookie"]`, got)
	}
	if got := h.Values("Vary"); len(got) != 1 || got[0] != "Cookie" {
		t.Errorf("Vary = %q, want [Cookie]", got)
	}
}

func fill(s, name, value string) string {
	return strings.Replace(strings.Replace(s, "NAME", name, 1), "VALUE", value, 1)
}

// The session cookie changes with the token only; the revision cookie with
// every write; a request that only reads sets neither.
func TestCookiesAreSetOnlyWhenTheyChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	c := login(t, e)
	const attrs = "NAME=VALUE; Path=/; Expires=Thu, 03 Jan 2030 03:04:05 GMT; Max-Age=86400; HttpOnly; SameSite=Lax"
	before := c.rev
	w := c.run(e.sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "more", 2)) })
	if c.rev == before {
		t.Errorf("revision cookie %q unchanged by a write", c.rev)
	}
	assertCookies(t, w.Header(), c, attrs, false, true)
	w = c.run(e.sm, func(ctx context.Context) { sessions.Get(ctx, "more") })
	h := w.Header()
	if len(h.Values("Set-Cookie")) != 0 || len(h.Values("Cache-Control")) != 0 {
		t.Errorf("a request that only read set %q / Cache-Control %q", h.Values("Set-Cookie"), h.Values("Cache-Control"))
	}
	if got := h.Values("Vary"); len(got) != 1 || got[0] != "Cookie" {
		t.Errorf("Vary = %q, want [Cookie] on every response that may depend on the session", got)
	}
	w = c.run(e.sm, func(ctx context.Context) { must(t, sessions.RenewToken(ctx)) })
	assertCookies(t, w.Header(), c, attrs, true, true)
}

func TestDestroyCookieExactly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{Cookie: sessions.CookieConfig{Domain: "example.com", Secure: true}})
	c := login(t, e)
	w := c.run(e.sm, func(ctx context.Context) { must(t, sessions.Destroy(ctx)) })
	assertCookies(t, w.Header(), c, "NAME=; Path=/; Domain=example.com; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; HttpOnly; Secure; SameSite=Lax", true, true)
}
