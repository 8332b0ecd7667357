package sessions_test

import (
	"context"
	"net/http"
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
		want string // with TOKEN for the token
	}{
		{"defaults: persistent until the absolute deadline", sessions.Config{},
			"jetfleet_session=TOKEN; Path=/; Expires=Thu, 03 Jan 2030 03:04:05 GMT; Max-Age=86400; HttpOnly; SameSite=Lax"},
		{"everything configured, expire on close", sessions.Config{ExpireOnClose: true, Cookie: sessions.CookieConfig{
			Name: "sid", Domain: "example.com", Path: "/app", Secure: true, SameSite: http.SameSiteStrictMode, Partitioned: true}},
			"sid=TOKEN; Path=/app; Domain=example.com; HttpOnly; Secure; SameSite=Strict; Partitioned"},
		{"SameSite=None needs Secure", sessions.Config{AbsoluteTimeout: 90 * time.Minute, Cookie: sessions.CookieConfig{Secure: true, SameSite: http.SameSiteNoneMode}},
			"jetfleet_session=TOKEN; Path=/; Expires=Wed, 02 Jan 2030 04:34:05 GMT; Max-Age=5400; HttpOnly; Secure; SameSite=None"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.cfg)
			c := newClient()
			if tc.cfg.Cookie.Name != "" {
				c.name = tc.cfg.Cookie.Name
			}
			w := c.run(e.sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "k", 1)) })
			assertCookie(t, w.Header(), tc.want, c.token)
		})
	}
}

func assertCookie(t *testing.T, h http.Header, want, token string) {
	t.Helper()
	if got := h.Values("Set-Cookie"); len(got) != 1 || got[0] != replaceToken(want, token) {
		t.Errorf("Set-Cookie = %q\n                 want %q", got, replaceToken(want, token))
	}
	if got := h.Values("Cache-Control"); len(got) != 1 || got[0] != `no-cache="Set-Cookie"` {
		t.Errorf(`Cache-Control = %q, want [no-cache="Set-Cookie"]`, got)
	}
	if got := h.Values("Vary"); len(got) != 1 || got[0] != "Cookie" {
		t.Errorf("Vary = %q, want [Cookie]", got)
	}
}

func replaceToken(s, token string) string {
	const marker = "TOKEN"
	for i := 0; i+len(marker) <= len(s); i++ {
		if s[i:i+len(marker)] == marker {
			return s[:i] + token + s[i+len(marker):]
		}
	}
	return s
}

func TestCookieIsSetOnlyWhenTheTokenChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{})
	c := login(t, e)
	w := c.run(e.sm, func(ctx context.Context) { must(t, sessions.Put(ctx, "more", 2)) })
	h := w.Header()
	if len(h.Values("Set-Cookie")) != 0 || len(h.Values("Cache-Control")) != 0 {
		t.Errorf("an update of an existing session set %q / Cache-Control %q", h.Values("Set-Cookie"), h.Values("Cache-Control"))
	}
	if got := h.Values("Vary"); len(got) != 1 || got[0] != "Cookie" {
		t.Errorf("Vary = %q, want [Cookie] on every response that may depend on the session", got)
	}
	w = c.run(e.sm, func(ctx context.Context) { must(t, sessions.RenewToken(ctx)) })
	assertCookie(t, w.Header(), "jetfleet_session=TOKEN; Path=/; Expires=Thu, 03 Jan 2030 03:04:05 GMT; Max-Age=86400; HttpOnly; SameSite=Lax", c.token)
}

func TestDestroyCookieExactly(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sessions.Config{Cookie: sessions.CookieConfig{Domain: "example.com", Secure: true}})
	c := login(t, e)
	w := c.run(e.sm, func(ctx context.Context) { must(t, sessions.Destroy(ctx)) })
	assertCookie(t, w.Header(), "jetfleet_session=; Path=/; Domain=example.com; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; HttpOnly; Secure; SameSite=Lax", "")
}
