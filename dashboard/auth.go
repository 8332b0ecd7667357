package dashboard

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Cookie names. Both are HttpOnly and scoped to the dashboard's prefix.
const (
	authCookie = "jetfleet_dashboard_auth"
	csrfCookie = "jetfleet_dashboard_csrf"
	// csrfField is the form field (or X-CSRF-Token header) of the token.
	csrfField = "csrf"
	// maxForm bounds a POST's body: the forms hold a few short fields.
	maxForm = 64 << 10
)

// reqInfo is what guard found out about a request, for the handlers.
type reqInfo struct {
	csrf  string // the CSRF token to put in forms
	nonce string // the CSP nonce of this response's inline script and style
}

type infoKey struct{}

func info(r *http.Request) reqInfo {
	ri, _ := r.Context().Value(infoKey{}).(reqInfo)
	return ri
}

// guard serves next only to an authorized request: 404 when the dashboard
// is disabled, 401 without valid credentials, 403 for a POST without a
// valid CSRF token.
func (d *Dashboard) guard(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !d.Enabled() {
			http.NotFound(w, r)
			return
		}
		ri := reqInfo{nonce: randomToken(16)}
		securityHeaders(w.Header(), ri.nonce)
		if d.cfg.Open && !loopbackHost(r.Host) {
			// A page elsewhere whose name was made to resolve to 127.0.0.1
			// (DNS rebinding) would reach an open dashboard as its own
			// origin; its requests name that page's host.
			http.Error(w, "403 Forbidden: this dashboard has no credentials, so it answers only requests addressed to localhost or a loopback address; set JETFLEET_DASHBOARD_TOKEN to reach it by another name", http.StatusForbidden)
			return
		}
		if !d.cfg.Open && !d.authorize(w, r) {
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		}
		secret, ok := d.csrfSecret(w, r)
		if r.Method == http.MethodPost && (!ok || !d.validCSRF(r, secret)) {
			http.Error(w, "403 Forbidden: missing or invalid CSRF token; reload the page and try again", http.StatusForbidden)
			return
		}
		ri.csrf = d.sign(secret)
		next(w, r.WithContext(context.WithValue(r.Context(), infoKey{}, ri)))
	})
}

// authorize checks the credentials and answers 401, 429 (a client
// locked out after repeated wrong guesses) or the redirect that drops
// ?token= itself when it returns false.
func (d *Dashboard) authorize(w http.ResponseWriter, r *http.Request) bool {
	addr := clientKey(r)
	if wait := d.guesses.lockedFor(addr); wait > 0 {
		tooManyGuesses(w, wait)
		return false
	}
	ok, presented := d.checkCredentials(w, r)
	switch {
	case ok:
		d.guesses.right(addr)
		return true
	case presented == "":
		d.unauthorized(w, "credentials required")
	case presented == "redirected":
		d.guesses.right(addr)
	default:
		d.wrongGuess(w, addr, presented)
	}
	return false
}

// checkCredentials reports whether r carries valid credentials and, when
// not, what it presented: "" for nothing, "redirected" for a right
// ?token= (answered with the redirect that drops it), else what was
// wrong.
func (d *Dashboard) checkCredentials(w http.ResponseWriter, r *http.Request) (ok bool, presented string) {
	if scheme, cred, found := strings.Cut(r.Header.Get("Authorization"), " "); found {
		switch {
		case strings.EqualFold(scheme, "Bearer") && d.cfg.Token != "" && equal(cred, d.cfg.Token):
			return true, ""
		case strings.EqualFold(scheme, "Basic") && d.basicOK(r):
			return true, ""
		}
		return false, "wrong credentials"
	}
	if tok, given := r.URL.Query()["token"]; given {
		if d.cfg.Token == "" || len(tok) != 1 || !equal(tok[0], d.cfg.Token) {
			return false, "wrong token"
		}
		d.setCookie(w, r, authCookie, d.authValue())
		q := r.URL.Query()
		q.Del("token")
		u := *r.URL
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
		return false, "redirected"
	}
	if c, err := r.Cookie(authCookie); err == nil && d.cfg.Token != "" {
		if equal(c.Value, d.authValue()) {
			return true, ""
		}
		// A cookie of an earlier token would come back with every
		// request of every open tab, each a wrong guess: it is dropped,
		// so that it counts once. (It still counts: a made-up cookie is a
		// guess of the token.)
		d.dropCookie(w, r, authCookie)
		return false, "stale or forged login cookie"
	}
	return false, ""
}

// wrongGuess counts a wrong guess from addr: 401 while it is within its
// free guesses, else 429 for the lockout it now serves.
func (d *Dashboard) wrongGuess(w http.ResponseWriter, addr netip.Addr, why string) {
	lockout := d.guesses.wrong(addr)
	if lockout == 0 {
		d.unauthorized(w, why)
		return
	}
	d.cfg.Logger.Warn().Str("client", addr.String()).Dur("locked_out_for", lockout).
		Msg("dashboard: repeated wrong credentials from this client; its attempts are refused for a while")
	tooManyGuesses(w, lockout)
}

// tooManyGuesses answers 429 with the wait in Retry-After.
func tooManyGuesses(w http.ResponseWriter, wait time.Duration) {
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	http.Error(w, fmt.Sprintf("429 Too Many Requests: too many wrong credentials from your address; try again in %d s", secs), http.StatusTooManyRequests)
}

func (d *Dashboard) basicOK(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	return ok && d.cfg.User != "" && equal(user, d.cfg.User) && equal(pass, d.cfg.Password)
}

func (d *Dashboard) unauthorized(w http.ResponseWriter, why string) {
	if d.cfg.User != "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="jetfleet dashboard", charset="UTF-8"`)
	} else {
		w.Header().Set("WWW-Authenticate", `Bearer realm="jetfleet dashboard"`)
	}
	http.Error(w, "401 Unauthorized: "+why+" (the dashboard takes JETFLEET_DASHBOARD_TOKEN as a bearer token or ?token=, or the basic-auth user and password)", http.StatusUnauthorized)
}

// authValue is the auth cookie's value: a MAC of the token, so the cookie
// does not hold the token and changing the token ends every cookie.
func (d *Dashboard) authValue() string {
	m := hmac.New(sha256.New, []byte(d.cfg.Token))
	m.Write([]byte("jetfleet dashboard auth v1"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfSecret returns the browser's CSRF secret from its cookie, setting a
// new one when there is none (ok is then false: a POST cannot be valid).
func (d *Dashboard) csrfSecret(w http.ResponseWriter, r *http.Request) (secret string, ok bool) {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 20 {
		return c.Value, true
	}
	secret = randomToken(32)
	d.setCookie(w, r, csrfCookie, secret)
	return secret, false
}

// sign is the form token of a CSRF secret: a MAC with the dashboard's key,
// so a token cannot be made for a cookie without the key.
func (d *Dashboard) sign(secret string) string {
	m := hmac.New(sha256.New, d.csrfKey)
	m.Write([]byte(secret))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (d *Dashboard) validCSRF(r *http.Request, secret string) bool {
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.PostFormValue(csrfField)
	}
	return got != "" && equal(got, d.sign(secret))
}

func (d *Dashboard) setCookie(w http.ResponseWriter, r *http.Request, name, value string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: d.cfg.Prefix, HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https"),
	})
}

// dropCookie tells the browser to forget its cookie name.
func (d *Dashboard) dropCookie(w http.ResponseWriter, r *http.Request, name string) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Path: d.cfg.Prefix, MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https"),
	})
}

// securityHeaders forbid framing, caching, referrers (a ?token= must not
// leak) and any script or style but this response's own.
func securityHeaders(h http.Header, nonce string) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+nonce+"'; style-src 'nonce-"+nonce+"'; "+
		"connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// loopbackHost reports whether host (a request's Host, with or without a
// port) names this machine: localhost, a name under .localhost, or a
// loopback address. An empty Host (HTTP/1.0, no browser sends it) is
// taken as loopback: the listener itself is.
func loopbackHost(host string) bool {
	if host == "" {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	addr, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && addr.Unmap().IsLoopback()
}
