package sessions

import (
	"crypto/subtle"
	"fmt"
	"net/http"
)

// StatusPageExpired is Laravel's status for a CSRF token mismatch, the CSRF
// middleware's default.
const StatusPageExpired = 419

// CSRFHeader is the request header the CSRF middleware reads the token from.
const CSRFHeader = "X-CSRF-Token"

// CSRFField is the form field the CSRF middleware reads the token from when
// the header is absent.
const CSRFField = "_token"

// CSRF rejects requests with an unsafe method (anything but GET, HEAD,
// OPTIONS and TRACE) unless they carry the session's CSRF token in the
// X-CSRF-Token header or the _token form field. A rejected request gets
// Config.CSRFFailureStatus (419 by default) and a plain-text message saying
// why. It must run inside Middleware: sm.Middleware(sm.CSRF(app)).
func (m *Manager) CSRF(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if safeMethod(r.Method) {
			next.ServeHTTP(w, r)
			return
		}
		want, err := csrfOf(r.Context())
		if err != nil {
			http.Error(w, "500 Internal Server Error: sessions.CSRF must be wrapped by Manager.Middleware", http.StatusInternalServerError)
			return
		}
		if reason := csrfMismatch(r, want); reason != "" {
			m.rejectCSRF(w, reason)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func safeMethod(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// csrfMismatch says what is wrong with the request's token, or "".
func csrfMismatch(r *http.Request, want string) string {
	got := r.Header.Get(CSRFHeader)
	if got == "" {
		got = r.PostFormValue(CSRFField)
	}
	switch {
	case want == "":
		return "this session has no CSRF token (it may have expired)"
	case got == "":
		return fmt.Sprintf("no CSRF token: send it in the %s header or the %s form field", CSRFHeader, CSRFField)
	case subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1:
		return "the CSRF token does not match this session"
	}
	return ""
}

func (m *Manager) rejectCSRF(w http.ResponseWriter, reason string) {
	status := m.cfg.CSRFFailureStatus
	text := http.StatusText(status)
	if status == StatusPageExpired {
		text = "Page Expired"
	}
	http.Error(w, fmt.Sprintf("%d %s: %s; reload the page and try again", status, text, reason), status)
}
