package healthz

import (
	"encoding/json"
	"html"
	"net/http"
	"strconv"
	"strings"
)

// Routes registers the health routes on mux:
//
//   - GET /up: 200 when the node can serve, 503 when a critical check
//     fails or the node is draining. An HTML page by default; the JSON
//     Report when the client asks for it (Accept: application/json, or
//     ?format=json). ?format=text gives the plain-text listing.
//   - GET /readyz: the same as /up; with ?verbose it lists each check in
//     plain text, Kubernetes style ("[+]nats ok"), unless ?format says
//     otherwise.
//   - GET /livez: the process is alive: always 200 "ok", no checks, even
//     while draining.
//
// Every health response carries Cache-Control: no-store. The handlers
// write to no store and use no session.
func (h *Health) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /up", h.serveUp)
	mux.HandleFunc("GET /readyz", h.serveUp)
	mux.HandleFunc("GET /livez", serveLive)
}

func serveLive(w http.ResponseWriter, _ *http.Request) {
	writeBody(w, http.StatusOK, "text/plain; charset=utf-8", []byte("ok\n"))
}

// snapshot is a report with its bodies rendered once, shared by every
// probe until a check publishes a new result. Read only.
type snapshot struct {
	pubs             []*published // the results it was built from, in check order
	rep              Report
	html, json, text []byte
}

func render(rep Report, pubs []*published) *snapshot {
	body, _ := json.Marshal(rep) // a Report always encodes
	return &snapshot{pubs: pubs, rep: rep, html: []byte(rep.html()), json: append(body, '\n'), text: []byte(rep.text())}
}

func (h *Health) serveUp(w http.ResponseWriter, r *http.Request) {
	s := h.current(r.Context())
	code := s.rep.HTTPStatus()
	switch format(r) {
	case "json":
		writeBody(w, code, "application/json", s.json)
	case "text":
		writeBody(w, code, "text/plain; charset=utf-8", s.text)
	default:
		writeBody(w, code, "text/html; charset=utf-8", s.html)
	}
}

func writeBody(w http.ResponseWriter, code int, contentType string, body []byte) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("Content-Type", contentType)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	w.Write(body)
}

// format picks "json", "text" or "html" for a request: ?format= first, then
// ?verbose (text), then the Accept header.
func format(r *http.Request) string {
	if r.URL.RawQuery != "" {
		q := r.URL.Query()
		switch f := q.Get("format"); f {
		case "json", "text", "html":
			return f
		}
		if q.Has("verbose") {
			return "text"
		}
	}
	if acceptsJSON(r.Header.Get("Accept")) {
		return "json"
	}
	return "html"
}

// acceptsJSON reports whether an Accept header prefers application/json to
// text/html: JSON listed with a higher quality, or the same quality and
// first.
func acceptsJSON(accept string) bool {
	if !strings.Contains(strings.ToLower(accept), "json") { // media types are case-insensitive
		return false
	}
	jsonQ, htmlQ, jsonAt, htmlAt := 0.0, 0.0, -1, -1
	for i, part := range strings.Split(accept, ",") {
		typ, params, _ := strings.Cut(part, ";")
		q := quality(params)
		switch strings.ToLower(strings.TrimSpace(typ)) {
		case "application/json":
			jsonQ, jsonAt = q, i
		case "text/html":
			htmlQ, htmlAt = q, i
		}
	}
	if jsonAt < 0 || jsonQ <= 0 {
		return false
	}
	return htmlAt < 0 || jsonQ > htmlQ || (jsonQ == htmlQ && jsonAt < htmlAt)
}

// quality reads q= from a media range's parameters; 1 when absent or bad.
func quality(params string) float64 {
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(k, "q") {
			if q, err := strconv.ParseFloat(v, 64); err == nil {
				return q
			}
		}
	}
	return 1
}

// text is the Kubernetes-style listing: "[+]name ok" for a passing check,
// "[+]name degraded: err" for a degraded one (it does not fail
// readiness), "[-]name failed: err" for a failing one, then a verdict.
func (r Report) text() string {
	var b strings.Builder
	for _, name := range r.order {
		c := r.Checks[name]
		switch c.Status {
		case CheckOK:
			b.WriteString("[+]" + name + " ok\n")
		case CheckDegraded:
			b.WriteString("[+]" + name + " degraded: " + oneLine(c.Error) + "\n")
		default:
			b.WriteString("[-]" + name + " failed: " + oneLine(c.Error) + "\n")
		}
	}
	switch r.Status {
	case StatusUp:
		b.WriteString("readyz check passed\n")
	case StatusDraining:
		b.WriteString("readyz check failed: draining\n")
	default:
		b.WriteString("readyz check failed\n")
	}
	return b.String()
}

func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}

// html is a small self-contained page: the status, then a table of checks.
func (r Report) html() string {
	var b strings.Builder
	b.WriteString(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>` + r.Status +
		`</title><style>body{font:16px system-ui,sans-serif;margin:2em}td,th{padding:.2em 1em;text-align:left}` +
		`.ok,.up{color:#176f2c}.degraded{color:#9a6700}.down,.draining{color:#b42318}</style></head><body>` +
		`<h1 class="` + r.Status + `">` + r.Status + `</h1>`)
	if len(r.Degraded) > 0 {
		b.WriteString(`<p class="degraded">degraded: ` + html.EscapeString(strings.Join(r.Degraded, ", ")) + `</p>`)
	}
	if len(r.order) > 0 {
		b.WriteString(`<table><tr><th>check</th><th>status</th><th>ms</th><th>error</th></tr>`)
		for _, name := range r.order {
			c := r.Checks[name]
			b.WriteString(`<tr><td>` + html.EscapeString(name) + `</td><td class="` + c.Status + `">` + c.Status +
				`</td><td>` + strconv.FormatFloat(c.TookMS, 'f', -1, 64) + `</td><td>` + html.EscapeString(c.Error) + `</td></tr>`)
		}
		b.WriteString(`</table>`)
	}
	b.WriteString("</body></html>\n")
	return b.String()
}
