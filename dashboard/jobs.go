package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/metrics"
)

// The jobs pages: every job by state (recent, running, ready, delayed,
// retrying, succeeded, cancelled, dead) with filters by queue, kind and
// tag and a search by ID; one job whole with its progress, result,
// headers and body, and Cancel and Retry; and the job kinds of the last
// hour (jobs per minute, run-time percentiles). All of it comes from
// bus.Inspector (Jobs, Job, Cancel) and the workers' samples.

// jobsPageSize is how many jobs a listing shows.
const jobsPageSize = 50

// stateTabs are the listings of the jobs page, in order.
var stateTabs = []struct{ state, label string }{
	{"", "Recent"}, {"running", "Running"}, {"ready", "Ready"}, {"delayed", "Delayed"},
	{"retrying", "Retrying"}, {"succeeded", "Succeeded"}, {"cancelled", "Cancelled"}, {"dead", "Dead"},
}

// jobsList is the data of the jobs page.
type jobsList struct {
	State, Queue, Kind, Tag string
	Tabs                    []jobsTab
	Queues                  []string
	Jobs                    []*jobRow
	// Filtered says a queue, kind or tag is chosen.
	Filtered bool
	// Label names the listing ("recent jobs", "running jobs").
	Label string
	// More when the listing has more jobs than the page shows; Command
	// is then the `jetfleet queue jobs` that lists more of them.
	More    bool
	Command string
}

type jobsTab struct {
	Label, URL string
	Current    bool
}

// jobRow is one job of a listing.
type jobRow struct {
	*bus.JobStatus
	// When is the moment the row is about; WhenLabel says which.
	When      time.Time
	WhenLabel string
	// Percent is the progress in whole percent; HasProgress when there is one.
	Percent     int
	HasProgress bool
	// Cancellable when the job has not finished.
	Cancellable bool
}

func newJobRow(st *bus.JobStatus) *jobRow {
	r := &jobRow{JobStatus: st, When: st.At, Cancellable: !st.State.Finished()}
	switch st.State {
	case bus.JobRunning:
		r.When, r.WhenLabel = st.StartedAt, "started"
	case bus.JobDelayed:
		r.When, r.WhenLabel = st.ReadyAt, "ready"
	case bus.JobRetrying:
		r.When, r.WhenLabel = st.NextAttemptAt, "next attempt"
	case bus.JobReady:
		r.When, r.WhenLabel = st.EnqueuedAt, "enqueued"
	}
	if p := st.Progress; p != nil {
		r.Percent, r.HasProgress = int(p.Done*100+0.5), true
	}
	return r
}

// jobsQuery reads the listing's filters from the URL.
func jobsQuery(r *http.Request) (state, queue, kind, tag string) {
	q := r.URL.Query()
	return q.Get("state"), q.Get("queue"), q.Get("kind"), q.Get("tag")
}

// jobsURLQuery is the query string of a listing.
func jobsURLQuery(state, queue, kind, tag string) string {
	v := url.Values{}
	for k, val := range map[string]string{"state": state, "queue": queue, "kind": kind, "tag": tag} {
		if val != "" {
			v.Set(k, val)
		}
	}
	return v.Encode()
}

func (d *Dashboard) loadJobs(ctx context.Context, state, queue, kind, tag string) (*jobsList, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	jl := &jobsList{State: state, Queue: queue, Kind: kind, Tag: tag, Filtered: queue != "" || kind != "" || tag != ""}
	for _, t := range stateTabs {
		jl.Tabs = append(jl.Tabs, jobsTab{Label: t.label, Current: t.state == state,
			URL: d.cfg.Prefix + "/jobs?" + jobsURLQuery(t.state, queue, kind, tag)})
		if t.state == state {
			jl.Label = strings.ToLower(t.label) + " jobs"
		}
	}
	var err error
	if jl.Queues, err = d.in.Queues(ctx); err != nil {
		return jl, err
	}
	// One more than the page shows tells whether there are more.
	jobs, err := d.in.Jobs(ctx, bus.JobFilter{State: bus.JobState(state), Queue: queue, Kind: kind, Tag: tag, Limit: jobsPageSize + 1})
	if len(jobs) > jobsPageSize {
		jobs, jl.More = jobs[:jobsPageSize], true
		jl.Command = cliCommand("jetfleet queue jobs", "--state", state, "--queue", queue, "--kind", kind, "--tag", tag, "--limit", strconv.Itoa(maxCLIJobs))
	}
	for _, st := range jobs {
		jl.Jobs = append(jl.Jobs, newJobRow(st))
	}
	return jl, err
}

// maxCLIJobs is the most `jetfleet queue jobs --limit` lists.
const maxCLIJobs = 1000

// cliCommand is a jetfleet command line: cmd and each flag of flagValues
// (pairs of a flag and its value) whose value is set, the value quoted for
// a POSIX shell when it needs to be.
func cliCommand(cmd string, flagValues ...string) string {
	var b strings.Builder
	b.WriteString(cmd)
	for i := 0; i+1 < len(flagValues); i += 2 {
		if v := flagValues[i+1]; v != "" {
			b.WriteString(" " + flagValues[i] + " " + shellQuote(v))
		}
	}
	return b.String()
}

// shellQuote is s as one word of a POSIX shell: as it is when it holds
// only safe characters, else in single quotes.
func shellQuote(s string) string {
	safe := !strings.ContainsFunc(s, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune("_-:/@%+=", r))
	})
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (d *Dashboard) serveJobs(w http.ResponseWriter, r *http.Request) {
	if id := strings.TrimSpace(r.URL.Query().Get("id")); id != "" {
		http.Redirect(w, r, d.cfg.Prefix+"/jobs/"+url.PathEscape(id), http.StatusSeeOther)
		return
	}
	d.jobsPage(w, r, false)
}

func (d *Dashboard) serveJobsFragment(w http.ResponseWriter, r *http.Request) {
	d.jobsPage(w, r, true)
}

func (d *Dashboard) jobsPage(w http.ResponseWriter, r *http.Request, fragment bool) {
	state, queue, kind, tag := jobsQuery(r)
	jl, err := d.loadJobs(r.Context(), state, queue, kind, tag)
	v := d.newView(r, "Jobs", "jobs", jl)
	q := jobsURLQuery(state, queue, kind, tag)
	v.Live = d.cfg.Prefix + "/fragments/jobs?" + q
	v.Back = d.cfg.Prefix + "/jobs?" + q
	if err != nil {
		v.Problem = "Could not list the jobs: " + err.Error()
		writeListError(w, err, fragment)
	}
	d.render(w, "jobs", v, fragment)
}

// jobPage is the data of one job's page.
type jobPage struct {
	Row *jobRow
	// Headers are the job's own headers, sorted.
	Headers []header
	// Body and Result are indented when JSON; Binary when the body is not
	// text (then quoted).
	Body, Result string
	Binary       bool
	// Retryable when the job is dead (its dead letter is retried).
	Retryable bool
}

func (d *Dashboard) serveJobPage(w http.ResponseWriter, r *http.Request) {
	d.jobPage(w, r, false)
}

func (d *Dashboard) serveJobPageFragment(w http.ResponseWriter, r *http.Request) {
	d.jobPage(w, r, true)
}

func (d *Dashboard) jobPage(w http.ResponseWriter, r *http.Request, fragment bool) {
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	st, err := d.in.Job(ctx, id)
	v := d.newView(r, "Job "+id, "jobs", nil)
	v.Live = d.cfg.Prefix + "/fragments/jobs/" + url.PathEscape(id)
	v.Back = d.cfg.Prefix + "/jobs/" + url.PathEscape(id)
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, bus.ErrJobNotFound) || errors.Is(err, bus.ErrInvalid) {
			code = http.StatusNotFound
			v.Live = "" // asking again finds nothing either
		}
		v.Problem = err.Error()
		w.WriteHeader(code)
		d.render(w, "jobpage", v, fragment)
		return
	}
	v.Data = newJobPage(st)
	if st.State.Finished() {
		// Nothing changes any more: the page has no refresh, and a
		// fragment tells the refresh of a page opened earlier to stop.
		v.Live = ""
	}
	d.render(w, "jobpage", v, fragment)
}

func newJobPage(st *bus.JobStatus) *jobPage {
	jp := &jobPage{Row: newJobRow(st), Retryable: st.State == bus.JobDead}
	for name, v := range st.Headers {
		jp.Headers = append(jp.Headers, header{name, v})
	}
	slices.SortFunc(jp.Headers, func(a, b header) int { return strings.Compare(a.Name, b.Name) })
	jp.Body, jp.Binary = showBody(st.Body)
	jp.Result, _ = showBody(st.Result)
	return jp
}

// showBody is b indented when it is JSON, as it is when it is text, and
// quoted (binary true) otherwise.
func showBody(b []byte) (string, bool) {
	var buf bytes.Buffer
	switch {
	case len(b) == 0:
		return "", false
	case json.Valid(b) && json.Indent(&buf, b, "", "  ") == nil:
		return buf.String(), false
	case utf8.Valid(b):
		return string(b), false
	}
	return strconv.Quote(string(b)), true
}

// postCancel cancels a job: waiting ones are removed, running ones stopped.
func (d *Dashboard) postCancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	if _, err := d.in.Cancel(ctx, id); err != nil {
		d.actionFailed(w, err)
		return
	}
	d.redirectDone(w, r, d.cfg.Prefix+"/jobs", "cancelled", id)
}

// postJobRetry retries a dead job from its dead letter.
func (d *Dashboard) postJobRetry(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	if _, err := d.in.Retry(ctx, id); err != nil {
		d.actionFailed(w, err)
		return
	}
	d.redirectDone(w, r, d.cfg.Prefix+"/jobs/"+url.PathEscape(id), "retried", "1")
}

// kindsPage is the data of the job kinds page.
type kindsPage struct {
	Kinds []metrics.KindStat
	// Empty when no worker published samples in the last hour.
	Empty bool
	// Unknown when a row is UnknownKind, the kinds no handler serves.
	Unknown     bool
	UnknownKind string
}

// kindsSpan is the span the kinds page covers.
const kindsSpan = time.Hour

func (d *Dashboard) serveKinds(w http.ResponseWriter, r *http.Request) {
	d.kindsPage(w, r, false)
}

func (d *Dashboard) serveKindsFragment(w http.ResponseWriter, r *http.Request) {
	d.kindsPage(w, r, true)
}

func (d *Dashboard) kindsPage(w http.ResponseWriter, r *http.Request, fragment bool) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	now := time.Now()
	v := d.newView(r, "Job kinds", "kinds", nil)
	v.Live = d.cfg.Prefix + "/fragments/kinds"
	kinds, err := d.kindStats(ctx, now)
	if err != nil {
		v.Problem = "Could not read the workers' samples: " + err.Error()
		if fragment {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}
	kp := &kindsPage{Kinds: kinds, Empty: len(kinds) == 0, UnknownKind: metrics.UnknownKind}
	kp.Unknown = slices.ContainsFunc(kinds, func(k metrics.KindStat) bool { return k.Kind == metrics.UnknownKind })
	v.Data = kp
	d.render(w, "kinds", v, fragment)
}

// kindStats returns the last hour's figures per kind, read from the
// samples at most every chartCache, however many pages refresh.
func (d *Dashboard) kindStats(ctx context.Context, now time.Time) ([]metrics.KindStat, error) {
	d.kindsMu.Lock()
	defer d.kindsMu.Unlock()
	if time.Since(d.kindsAt) < chartCache && d.kinds != nil {
		return d.kinds, nil
	}
	samples, err := metrics.ReadSamples(ctx, d.js, now.Add(-kindsSpan-time.Minute))
	if err != nil {
		return nil, err
	}
	d.kinds, d.kindsAt = metrics.KindStats(samples, now, kindsSpan), time.Now()
	if d.kinds == nil {
		d.kinds = []metrics.KindStat{}
	}
	return d.kinds, nil
}
