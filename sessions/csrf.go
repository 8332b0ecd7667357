package sessions

import (
	"crypto/subtle"
	"errors"
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

// CSRFMaxFormBytes bounds the body of a request that carries its CSRF
// token in the _token form field: to find the field the CSRF middleware
// parses the form, and an outsider's body must not fill memory or disk
// first. A larger upload sends its token in the X-CSRF-Token header, which
// leaves the body to the handler.
const CSRFMaxFormBytes = 10 << 20

// csrfFormMemory is how much of a multipart form the CSRF middleware's
// parse keeps in memory; the rest of its files go to temporary files.
const csrfFormMemory = 1 << 20

// CSRF rejects requests with an unsafe method (anything but GET, HEAD,
// OPTIONS and TRACE) unless they carry the session's CSRF token in the
// X-CSRF-Token header or the _token form field. A rejected request gets
// Config.CSRFFailureStatus (419 by default) and a plain-text message saying
// why. A session without a token is rejected before the body is read; a
// form whose body exceeds CSRFMaxFormBytes gets 413. It must run inside
// Middleware: sm.Middleware(sm.CSRF(app)).
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
		if want == "" {
			m.rejectCSRF(w, "this session has no CSRF token (it may have expired)")
			return
		}
		got, tooLarge := csrfTokenOf(w, r)
		if tooLarge {
			http.Error(w, fmt.Sprintf("413 Request Entity Too Large: a form that carries the CSRF token in its %s field may have at most %d bytes; send the token in the %s header with a larger upload", CSRFField, CSRFMaxFormBytes, CSRFHeader), http.StatusRequestEntityTooLarge)
			return
		}
		if reason := csrfMismatch(got, want); reason != "" {
			m.rejectCSRF(w, reason)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// csrfTokenOf is the token r carries: its X-CSRF-Token header, else its
// _token form field, read from a body of at most CSRFMaxFormBytes;
// tooLarge when the body was larger.
func csrfTokenOf(w http.ResponseWriter, r *http.Request) (token string, tooLarge bool) {
	if token := r.Header.Get(CSRFHeader); token != "" {
		return token, false
	}
	r.Body = http.MaxBytesReader(w, r.Body, CSRFMaxFormBytes)
	err := r.ParseMultipartForm(csrfFormMemory)
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return "", true
	}
	return r.PostFormValue(CSRFField), false
}

func safeMethod(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// csrfMismatch says what is wrong with the request's token got, or "".
func csrfMismatch(got, want string) string {
	switch {
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
