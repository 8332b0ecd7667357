package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jetfleet/jetfleet/sessions"
)

// writeJSON answers with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// writeError answers err (an *httpError) as {"error": "..."}, or as a small
// HTML page for a browser.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	he, ok := err.(*httpError)
	if !ok {
		he = &httpError{status: http.StatusInternalServerError, msg: err.Error()}
	}
	if wantsHTML(r) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(he.status)
		fmt.Fprintf(w, "<!doctype html><title>%d %s</title><p>%s</p><p><a href=\"/\">Back to the catalog</a></p>\n",
			he.status, statusText(he.status), html.EscapeString(he.msg))
		return
	}
	writeJSON(w, he.status, map[string]string{"error": he.msg})
}

// statusText is the name of status, with Laravel's 419 (a CSRF token
// missing or expired), which net/http does not name.
func statusText(status int) string {
	if status == sessions.StatusPageExpired {
		return "Page Expired"
	}
	return http.StatusText(status)
}

// input is a request body read as JSON or as a form.
type input struct {
	json map[string]json.RawMessage
	form url.Values
}

// readInput reads the body of r: a JSON object (application/json) or a form
// (application/x-www-form-urlencoded). The body limit is already applied.
func readInput(r *http.Request) (*input, error) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, bodyError(err)
		}
		if !utf8.Valid(body) { // encoding/json would put U+FFFD in its place: two bodies, one value
			return nil, fail(http.StatusBadRequest, "the body must be valid UTF-8")
		}
		in := &input{}
		if err := json.Unmarshal(body, &in.json); err != nil || in.json == nil {
			return nil, fail(http.StatusBadRequest, "the body must be a JSON object like {\"name\": \"...\"}")
		}
		return in, nil
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return nil, bodyError(err)
		}
		return &input{form: r.PostForm}, nil
	case "":
		return nil, fail(http.StatusUnsupportedMediaType, "send a JSON body with Content-Type: application/json (or an HTML form)")
	}
	return nil, fail(http.StatusUnsupportedMediaType, "Content-Type %s is not accepted: send application/json (or an HTML form)", ct)
}

// bodyError is what a failed read of a request body answers: 413 past
// the limit, 408 when the body did not arrive before the server's read
// deadline (a slow client, not a server fault), else 400.
func bodyError(err error) error {
	var tooBig *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooBig):
		return err
	case errors.As(err, &netErr) && netErr.Timeout():
		return fail(http.StatusRequestTimeout, "the request body did not arrive in time")
	}
	return fail(http.StatusBadRequest, "the body cannot be read: %v", err)
}

// text returns field as trimmed text of at most maxRunes characters, with no
// control characters. A missing or empty field is an error when required.
func (in *input) text(field string, required bool, maxRunes int) (string, error) {
	var s string
	var present bool
	if in.json != nil {
		raw, ok := in.json[field]
		if ok && string(raw) != "null" {
			present = true
			if err := json.Unmarshal(raw, &s); err != nil {
				return "", fail(http.StatusBadRequest, "%s: want a string, got %s", field, jsonKind(raw))
			}
		}
	} else if vs, ok := in.form[field]; ok {
		present, s = true, vs[0]
	}
	s = strings.TrimSpace(s)
	switch {
	case s == "" && required:
		if present {
			return "", fail(http.StatusBadRequest, "%s must not be empty", field)
		}
		return "", fail(http.StatusBadRequest, "%s is required", field)
	case !utf8.ValidString(s):
		return "", fail(http.StatusBadRequest, "%s must be valid UTF-8", field)
	case utf8.RuneCountInString(s) > maxRunes:
		return "", fail(http.StatusBadRequest, "%s is too long: at most %d characters", field, maxRunes)
	}
	if i := strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' && r != '\r' }); i >= 0 {
		return "", fail(http.StatusBadRequest, "%s must not contain control characters", field)
	}
	if i := strings.IndexFunc(s, deceptive); i >= 0 {
		r, _ := utf8.DecodeRuneInString(s[i:])
		return "", fail(http.StatusBadRequest, "%s must not contain %U (invisible, direction-changing or a replacement for an invalid character: JSON's lone surrogates become it)", field, r)
	}
	return s, nil
}

// deceptive are the characters a name or text must not hold: they make
// two different strings look alike ("ann" and "ann\u200b") or reorder
// what is shown (U+202E), or stand for something lost (U+FFFD, which
// encoding/json puts for a lone surrogate such as "\ud800": two bodies,
// one value). The joiners U+200C and U+200D stay: emoji and some
// scripts need them.
func deceptive(r rune) bool {
	switch {
	case r == utf8.RuneError, r == '\u200b', r == '\u2060', r == '\ufeff', r == '\u00ad':
		return true
	case r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069', r == '\u200e', r == '\u200f', r == '\u061c':
		return true
	}
	return false
}

// clip is at most the first 64 bytes of s, a client's input quoted in an
// error message: the answer names what was wrong without echoing a long
// input whole.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	n := max
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// jsonKind names the JSON type of raw for an error message.
func jsonKind(raw json.RawMessage) string {
	switch s := strings.TrimSpace(string(raw)); {
	case s == "true" || s == "false":
		return "a boolean"
	case strings.HasPrefix(s, "{"):
		return "an object"
	case strings.HasPrefix(s, "["):
		return "an array"
	case strings.HasPrefix(s, `"`):
		return "a string"
	}
	return "a number"
}

// pathID reads the path value name as a positive integer ID.
func pathID(r *http.Request, name string) (int64, error) {
	v := r.PathValue(name)
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id < 1 {
		return 0, fail(http.StatusBadRequest, "%s %q is not a positive integer", name, clip(v))
	}
	return id, nil
}

// maxID is above every item ID: the first page of a listing starts below it.
const maxID = 1 << 62

// queryInt reads query parameter name as an integer in [lo, hi], or def
// when absent.
func queryInt(r *http.Request, name string, def, lo, hi int64) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		if hi == maxID {
			return 0, fail(http.StatusBadRequest, "%s=%q: want an integer of at least %d", name, clip(v), lo)
		}
		return 0, fail(http.StatusBadRequest, "%s=%q: want an integer from %d to %d", name, clip(v), lo, hi)
	}
	return n, nil
}
