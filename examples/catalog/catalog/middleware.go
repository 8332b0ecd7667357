package catalog

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/jetfleet/jetfleet/node"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/sessions"
)

// Session keys.
const (
	keyUserID   = "user_id"
	keyUserName = "user_name"
	// keyDBToken holds the causal token of the user's last write
	// (readmodel.Token), so their next request on any node reads it.
	keyDBToken = "db_token"
)

// web wraps an application handler in what every catalog route needs
// inside the session middleware: security headers, a body limit and a
// causal-read scope.
func web(maxBody int64, h http.Handler) http.Handler {
	return secureHeaders(causal(limitBody(maxBody, h)))
}

// basePolicy is the Content-Security-Policy of every catalog response
// but the pages (pagePolicy): nothing may load or run, no site may frame
// it, forms post only to this site.
const basePolicy = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// pagePolicy is the Content-Security-Policy of a page whose inline style
// carries nonce: that style, the site's own images, nothing else.
func pagePolicy(nonce string) string {
	return basePolicy + "; style-src 'nonce-" + nonce + "'; img-src 'self'"
}

// secureHeaders sets the headers every catalog response carries: the
// base Content-Security-Policy (a page replaces it with its own, with a
// nonce), no framing (X-Frame-Options for browsers that predate
// frame-ancestors), no content sniffing, and no Referer to other sites.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", basePolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// causal runs the request in a readmodel.Sticky scope that starts from the
// token the session holds, and puts the scope's new token in the session
// when the request wrote something, just before the response header goes
// out (the session is saved then).
func causal(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := readmodel.Sticky(r.Context())
		tok, _ := sessions.GetString(ctx, keyDBToken)
		ctx = readmodel.WithToken(ctx, tok)
		tw := &tokenWriter{ResponseWriter: w, keep: func() {
			if now := readmodel.Token(ctx); now != "" && now != tok {
				sessions.Put(ctx, keyDBToken, now) // an error is logged by the session middleware on save
			}
		}}
		next.ServeHTTP(tw, r.WithContext(ctx))
		tw.flushToken()
	})
}

// tokenWriter calls keep once, before the response header is written.
type tokenWriter struct {
	http.ResponseWriter
	keep func()
	done bool
}

func (w *tokenWriter) flushToken() {
	if !w.done {
		w.done = true
		w.keep()
	}
}

func (w *tokenWriter) WriteHeader(code int) {
	w.flushToken()
	w.ResponseWriter.WriteHeader(code)
}

func (w *tokenWriter) Write(p []byte) (int, error) {
	w.flushToken()
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *tokenWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// limitBody caps the request body; reading past it fails with
// *http.MaxBytesError, which the handlers answer with 413.
func limitBody(n int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > n {
			writeError(w, r, errTooLarge(n))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, n)
		next.ServeHTTP(w, r)
	})
}

// handlerFunc is an application handler that returns its failure; api and
// page turn it into a response.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// httpError is a failure the client caused or can act on: its status and a
// message saying what is wrong.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// fail returns an httpError with a formatted message.
func fail(status int, format string, args ...any) error {
	return &httpError{status: status, msg: fmt.Sprintf(format, args...)}
}

func errTooLarge(n int64) error {
	return fail(http.StatusRequestEntityTooLarge, "request body too large: the limit is %s", byteSize(n))
}

// api runs h and answers its error as JSON ({"error": "..."}), or as a
// small HTML page for a browser.
func (c *Catalog) api(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			c.answerError(w, r, err)
		}
	})
}

// page is api for HTML pages: a failure is always an HTML page.
func (c *Catalog) page(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			r.Header.Set("Accept", "text/html")
			c.answerError(w, r, err)
		}
	})
}

// answerError maps err to a response: an httpError as it says, an
// oversized body to 413, NATS out of reach (a node killed, an election)
// to 503 with Retry-After (nothing was recorded: a client may send the
// request again, with the same Idempotency-Key), anything else to a
// logged 500.
func (c *Catalog) answerError(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &he):
	case errors.As(err, &tooBig):
		he = errTooLarge(tooBig.Limit).(*httpError)
	case readmodel.IsFull(err):
		c.log.Warn().Ctx(r.Context()).Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("request refused: the database is full")
		he = &httpError{status: http.StatusInsufficientStorage, msg: "the database is full (its bound for SQLite is DB_SQLITE_MAX_MB): nothing was recorded"}
	case node.Unavailable(err):
		c.log.Warn().Ctx(r.Context()).Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("request failed: NATS out of reach; answered 503")
		w.Header().Set("Retry-After", "1")
		he = &httpError{status: http.StatusServiceUnavailable, msg: "temporarily unavailable, nothing was recorded: retry"}
	default:
		c.log.Error().Ctx(r.Context()).Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("request failed")
		he = &httpError{status: http.StatusInternalServerError, msg: "internal error; the server log has the details"}
	}
	writeError(w, r, he)
}

// wantsHTML reports whether the client is a browser asking for a page.
func wantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// byteSize writes n in the largest whole unit.
func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
