package sessions_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"testing"

	"github.com/jetfleet/jetfleet/sessions"
)

// TestSecureAttributeFollowsTheRequest runs the middleware behind real HTTP
// and HTTPS servers: by default the cookie is Secure when the request came
// over TLS, or from a trusted proxy saying X-Forwarded-Proto: https, and
// not otherwise (an untrusted client's header is ignored); Cookie.Secure
// and Cookie.NeverSecure force it either way.
func TestSecureAttributeFollowsTheRequest(t *testing.T) {
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	elsewhere := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cases := []struct {
		name   string
		cookie sessions.CookieConfig
		trust  []netip.Prefix
		tls    bool
		proto  string // X-Forwarded-Proto
		want   bool
	}{
		{"plain HTTP", sessions.CookieConfig{}, nil, false, "", false},
		{"TLS", sessions.CookieConfig{}, nil, true, "", true},
		{"untrusted client says https", sessions.CookieConfig{}, nil, false, "https", false},
		{"client outside the trusted proxies says https", sessions.CookieConfig{}, elsewhere, false, "https", false},
		{"trusted proxy says https", sessions.CookieConfig{}, loopback, false, "HTTPS", true},
		{"trusted proxy says https first", sessions.CookieConfig{}, loopback, false, "https, http", true},
		{"trusted proxy says http", sessions.CookieConfig{}, loopback, false, "http", false},
		{"forced on over plain HTTP", sessions.CookieConfig{Secure: true}, nil, false, "", true},
		{"forced off over TLS", sessions.CookieConfig{NeverSecure: true}, nil, true, "", false},
		{"forced off behind a trusted proxy", sessions.CookieConfig{NeverSecure: true}, loopback, false, "https", false},
	}
	e := newEnv(t, sessions.Config{})
	if _, err := sessions.New(e.js, sessions.Config{Cookie: sessions.CookieConfig{Secure: true, NeverSecure: true}}); !errors.Is(err, sessions.ErrConfig) {
		t.Errorf("Secure and NeverSecure together: %v, want ErrConfig", err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sm := e.managerWith(sessions.Config{Cookie: c.cookie, TrustedProxies: c.trust})
			h := sm.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				must(t, sessions.Put(r.Context(), "k", 1))
				_, _ = io.WriteString(w, "ok")
			}))
			srv := httptest.NewUnstartedServer(h)
			if c.tls {
				srv.StartTLS()
			} else {
				srv.Start()
			}
			defer srv.Close()
			req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, srv.URL, nil)
			must(t, err)
			if c.proto != "" {
				req.Header.Set("X-Forwarded-Proto", c.proto)
			}
			resp, err := srv.Client().Do(req)
			must(t, err)
			resp.Body.Close()
			i := slices.IndexFunc(resp.Cookies(), func(ck *http.Cookie) bool { return ck.Name == "jetfleet_session" })
			if i < 0 {
				t.Fatalf("no session cookie in %q", resp.Header.Values("Set-Cookie"))
			}
			if got := resp.Cookies()[i].Secure; got != c.want {
				t.Errorf("Secure = %v, want %v (Set-Cookie %q)", got, c.want, resp.Header.Values("Set-Cookie"))
			}
		})
	}
}

// TestSecureCookieSettingsFromEnv: SESSION_SECURE_COOKIE unset (or null)
// is automatic, true and false force it; SESSION_TRUSTED_PROXIES takes
// prefixes and single addresses.
func TestSecureCookieSettingsFromEnv(t *testing.T) {
	for v, want := range map[string]sessions.CookieConfig{
		"":      {},
		"null":  {},
		"true":  {Secure: true},
		"false": {NeverSecure: true},
		"0":     {NeverSecure: true},
	} {
		cfg, err := sessions.ConfigFromEnv(envOf(map[string]string{"SESSION_SECURE_COOKIE": v}))
		must(t, err)
		if cfg.Cookie.Secure != want.Secure || cfg.Cookie.NeverSecure != want.NeverSecure {
			t.Errorf("SESSION_SECURE_COOKIE=%q: Secure %v, NeverSecure %v; want %v, %v", v, cfg.Cookie.Secure, cfg.Cookie.NeverSecure, want.Secure, want.NeverSecure)
		}
	}
	cfg, err := sessions.ConfigFromEnv(envOf(map[string]string{"SESSION_TRUSTED_PROXIES": " 10.1.2.3/8, 192.168.0.7,::1 "}))
	must(t, err)
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.0.7/32"), netip.MustParsePrefix("::1/128")}
	if !slices.Equal(cfg.TrustedProxies, want) {
		t.Errorf("TrustedProxies = %v, want %v", cfg.TrustedProxies, want)
	}
}

// managerWith is a manager of the env's bucket with cfg.
func (e *env) managerWith(cfg sessions.Config) *sessions.Manager {
	e.t.Helper()
	sm, err := sessions.New(e.js, cfg)
	if err != nil {
		e.t.Fatalf("sessions.New: %v", err)
	}
	return sm
}
