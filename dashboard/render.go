package dashboard

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/jetfleet/jetfleet/bus"
)

//go:embed templates/*.html
var templateFS embed.FS

// pageTemplate is one page: the layout around its content, and the page's
// live fragment alone for the auto-refresh.
type pageTemplate struct {
	full *template.Template
}

// pageNames are the pages; each templates/<name>.html defines "content"
// and, for live pages, "live".
var pageNames = []string{"overview", "failed", "job", "jobs", "jobpage", "kinds", "batches", "batch"}

func parsePages() (map[string]*pageTemplate, error) {
	out := map[string]*pageTemplate{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard: template %s: %w", name, err)
		}
		out[name] = &pageTemplate{full: t}
	}
	return out, nil
}

// view is what every template gets.
type view struct {
	Title   string
	Nav     string // the current section: overview or failed
	Prefix  string
	CSRF    string
	Nonce   string
	Live    string // the URL of the live fragment; "" when the page has none
	Every   int    // refresh interval in milliseconds
	Notice  string // the outcome of the last action
	Problem string // an error to show
	Now     time.Time
	// Back is the page a form returns to after its action.
	Back string
	Data any
}

// newView fills the fields every page needs.
func (d *Dashboard) newView(r *http.Request, title, nav string, data any) *view {
	ri := info(r)
	return &view{
		Title: title, Nav: nav, Prefix: d.cfg.Prefix, CSRF: ri.csrf, Nonce: ri.nonce,
		Every: int(d.cfg.Refresh / time.Millisecond), Notice: notice(r.URL.Query()),
		Now: time.Now(), Back: r.URL.RequestURI(), Data: data,
	}
}

// render writes the page, or only its live fragment when fragment is set.
func (d *Dashboard) render(w http.ResponseWriter, page string, v *view, fragment bool) {
	name := "layout.html"
	if fragment {
		name = "live"
	}
	var buf bytes.Buffer
	if err := d.pages[page].full.ExecuteTemplate(&buf, name, v); err != nil {
		d.cfg.Logger.Error().Err(err).Str("page", page).Msg("dashboard: render")
		http.Error(w, "500 Internal Server Error: the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

// outcome is the banner of an action's outcome: its text, with n where
// the format has %s, and what n must be for the banner to show.
type outcome struct {
	format string
	valid  func(n string) bool
}

// notices are the outcomes an action redirects with (?done=...&n=...):
// codes, not text, and n shows only when it is what its code says (a
// count, a queue name, a batch ID, a job ID without spaces), so a link
// cannot make the page say a sentence of its own.
var notices = map[string]outcome{
	"retried":         {"Retried %s job(s): back on their queues.", isCount},
	"retried-some":    {"Retried %s job(s): back on their queues. The others stay here: no worker would run them (of a batch cancelled since, or published on a subject that broke the naming rule; jetfleet queue retry all names them).", isCount},
	"forgotten":       {"Forgot %s failed job(s).", isCount},
	"paused":          {"Paused queue %s: workers take no new job from it.", isQueueName},
	"resumed":         {"Resumed queue %s.", isQueueName},
	"cancelled":       {"Cancelled job %s: it will not run (again).", isJobWord},
	"batch-cancelled": {"Cancelled batch %s: its pending jobs will be skipped; jobs already running finish.", isBatchID},
}

// notice is the banner the query asks for; "" when its code is unknown or
// its n is not what the code takes.
func notice(q url.Values) string {
	o, ok := notices[q.Get("done")]
	n := q.Get("n")
	if !ok || !o.valid(n) {
		return ""
	}
	return fmt.Sprintf(o.format, n)
}

// isCount accepts a non-negative integer in decimal digits.
func isCount(n string) bool {
	_, err := strconv.ParseUint(n, 10, 64)
	return err == nil
}

// isQueueName accepts a valid queue name.
func isQueueName(n string) bool { return bus.ValidateName("queue", n) == nil }

// isBatchID accepts a valid batch ID.
func isBatchID(n string) bool { return bus.ValidateBatchID(n) == nil }

// isJobWord accepts a valid job ID of at most maxJobID bytes without
// spaces: one word, not a sentence.
func isJobWord(n string) bool {
	return len(n) <= maxJobID && bus.ValidateJobID(n) == nil && !strings.ContainsFunc(n, unicode.IsSpace)
}

// maxJobID is the longest job ID Dispatch takes, in bytes.
const maxJobID = 256

// redirectDone sends the browser back to the form's page with a notice.
func (d *Dashboard) redirectDone(w http.ResponseWriter, r *http.Request, fallback, done, n string) {
	back := r.PostFormValue("back")
	if !strings.HasPrefix(back, d.cfg.Prefix) || strings.HasPrefix(back, "//") {
		back = fallback
	}
	u, err := url.Parse(back)
	if err != nil {
		u = &url.URL{Path: fallback}
	}
	q := u.Query()
	q.Set("done", done)
	q.Set("n", n)
	u.RawQuery = q.Encode()
	http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
}

var funcs = template.FuncMap{
	"ago":     ago,
	"age":     age,
	"stamp":   func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"iso":     func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"join":    strings.Join,
	"pathesc": url.PathEscape,
	// No queryesc: html/template escapes a value in a URL's query itself,
	// so escaping it before would escape it twice.
	"validtag":  validTag,
	"validkind": func(kind string) bool { return bus.ValidateName("kind", kind) == nil },
	"firstline": func(s string) string {
		line, _, _ := strings.Cut(s, "\n")
		return line
	},
	"add":     func(a, b int) int { return a + b },
	"sub":     func(a, b int) int { return a - b },
	"runtime": runTime,
	"rate": func(v float64) string {
		if v < 10 {
			return strconv.FormatFloat(v, 'f', 2, 64)
		}
		return strconv.FormatFloat(v, 'f', 0, 64)
	},
	"in": inOrAgo,
}

// runTime is a job's run time, rounded to what a reader needs.
func runTime(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

// inOrAgo is "in 5s" for a time to come, else as ago.
func inOrAgo(now, t time.Time) string {
	if t.After(now.Add(time.Second)) {
		return "in " + age(t.Sub(now))
	}
	return ago(now, t)
}

// age is a short duration: 45s, 12m, 3h, 2d; "—" for zero.
func age(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}

// ago is how long before now t was.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < time.Second {
		return "just now"
	}
	return age(d) + " ago"
}

// validTag reports whether tag keeps the tag rule (bus.Tags: 1 to
// bus.MaxTagLen bytes of printable ASCII without spaces, '.', '*', '>'
// or ','), so that the listing of its jobs takes it. A job published
// without bus may carry others; they are shown, not linked.
func validTag(tag string) bool { return bus.ValidateTag(tag) == nil }
