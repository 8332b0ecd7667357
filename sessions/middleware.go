package sessions

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/netip"
	"strings"
	"time"
)

// Middleware loads the request's session before next runs and saves it just
// before the response header is written, only when the request changed it
// (or its idle deadline is due for a refresh). Handlers use the package
// functions (Put, Get, Destroy, ...) with the request's context.
//
// A cookie that is malformed, forged, expired, or not in the bucket gets a
// fresh empty session; the client's value is never adopted. A new session
// costs nothing until something is put in it: only then is it stored and
// the cookie set.
//
// When NATS or the bucket cannot be reached, the request is answered by
// Config.ErrorHandler (503 by default) and next does not run; with
// Config.FailOpen, next runs with an empty session that is never saved. A
// save that fails replaces the response with ErrorHandler's.
func (m *Manager) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Cookie")
		st, err := m.begin(r)
		if err != nil {
			m.log(r, "sessions: session not loaded", err)
			if !m.cfg.FailOpen {
				m.cfg.ErrorHandler(w, r, err)
				return
			}
			st = m.newState(true)
			st.detached = true
		}
		sw := &sessionWriter{ResponseWriter: w, m: m, r: r, st: st}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), ctxKey{}, st)))
		sw.commit()
	})
}

// begin loads the session named by the request's cookie.
func (m *Manager) begin(r *http.Request) (*state, error) {
	c, err := r.Cookie(m.cfg.Cookie.Name)
	if err != nil {
		return m.newState(false), nil
	}
	token, ok := parseToken(c.Value)
	if !ok {
		return m.newState(true), nil
	}
	key := storageKey(token)
	known := parseSeen(r, m.cfg.Cookie.Name, key)
	rec, rev, err := m.load(r.Context(), key, known)
	if err != nil {
		return nil, err
	}
	if rec == nil {
		return m.newState(true), nil
	}
	return m.loadedState(token, key, rec, rev, known), nil
}

// sessionWriter saves the session when the handler starts its response.
type sessionWriter struct {
	http.ResponseWriter
	m         *Manager
	r         *http.Request
	st        *state
	committed bool
	failed    bool
}

var errResponseReplaced = errors.New("sessions: the session could not be saved; the response was replaced by the error handler")

// commit saves the session once; false when saving failed and the error
// response was sent instead.
func (w *sessionWriter) commit() bool {
	if w.committed {
		return !w.failed
	}
	w.committed = true
	// A client that hangs up does not undo what the handler did: save
	// anyway, bounded by StoreTimeout.
	act, err := w.st.commit(context.WithoutCancel(w.r.Context()))
	if errors.Is(err, ErrSessionGone) {
		w.m.log(w.r, "sessions: session changes discarded", err)
		return true
	}
	if err != nil {
		w.m.log(w.r, "sessions: session not saved", err)
		w.failed = true
		clear(w.Header()) // what the handler set belongs to the response replaced
		w.Header().Add("Vary", "Cookie")
		w.m.cfg.ErrorHandler(w.ResponseWriter, w.r, err)
		return false
	}
	w.m.setCookie(w.Header(), w.r, act)
	return true
}

// WriteHeader saves the session, then writes the header (or the error
// response when the save failed).
func (w *sessionWriter) WriteHeader(code int) {
	if code < 200 { // informational: the real header comes later
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if w.commit() {
		w.ResponseWriter.WriteHeader(code)
	}
}

// Write saves the session before the first byte goes out.
func (w *sessionWriter) Write(b []byte) (int, error) {
	if !w.committed {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed {
		return 0, errResponseReplaced
	}
	return w.ResponseWriter.Write(b)
}

// Flush saves the session, then flushes.
func (w *sessionWriter) Flush() {
	if !w.committed {
		w.WriteHeader(http.StatusOK)
	}
	if !w.failed {
		_ = http.NewResponseController(w.ResponseWriter).Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *sessionWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (m *Manager) setCookie(h http.Header, r *http.Request, act cookieAction) {
	name, revName := m.cfg.Cookie.Name, revCookieName(m.cfg.Cookie.Name)
	switch {
	case act.clear:
		for _, n := range []string{name, revName} {
			c := m.cookie(r, n, "")
			c.Expires, c.MaxAge = time.Unix(1, 0), -1
			h.Add("Set-Cookie", c.String())
		}
	case act.token != "" || act.rev != "":
		if act.token != "" {
			h.Add("Set-Cookie", m.expiring(m.cookie(r, name, act.token), act.expires).String())
		}
		if act.rev != "" {
			h.Add("Set-Cookie", m.expiring(m.cookie(r, revName, act.rev), act.expires).String())
		}
	default:
		return
	}
	h.Add("Cache-Control", `no-cache="Set-Cookie"`)
}

// expiring gives c the session's absolute deadline, unless cookies end
// with the browser session.
func (m *Manager) expiring(c *http.Cookie, expires time.Time) *http.Cookie {
	if !m.cfg.ExpireOnClose {
		c.Expires = expires.UTC().Truncate(time.Second)
		c.MaxAge = max(int(math.Ceil(expires.Sub(m.now()).Seconds())), 1)
	}
	return c
}

func (m *Manager) cookie(r *http.Request, name, value string) *http.Cookie {
	cc := m.cfg.Cookie
	return &http.Cookie{Name: name, Value: value, Path: cc.Path, Domain: cc.Domain,
		Secure: m.secure(r), HttpOnly: true, SameSite: cc.SameSite, Partitioned: cc.Partitioned}
}

// secure decides the cookie's Secure attribute for a response to r:
// forced by Cookie.Secure or Cookie.NeverSecure, else set when r came
// over TLS or from a trusted proxy saying X-Forwarded-Proto: https.
func (m *Manager) secure(r *http.Request) bool {
	switch cc := m.cfg.Cookie; {
	case cc.Secure:
		return true
	case cc.NeverSecure:
		return false
	}
	return r.TLS != nil || m.forwardedHTTPS(r)
}

// forwardedHTTPS reports whether r came from a trusted proxy whose
// X-Forwarded-Proto (its first value, the scheme the client used) is https.
func (m *Manager) forwardedHTTPS(r *http.Request) bool {
	if len(m.cfg.TrustedProxies) == 0 {
		return false
	}
	proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	if !strings.EqualFold(strings.TrimSpace(proto), "https") {
		return false
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	addr := ap.Addr().Unmap()
	for _, p := range m.cfg.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}
