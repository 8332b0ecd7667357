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
	"unicode/utf8"

	"github.com/jetfleet/jetfleet/bus"
)

// maxPage bounds ?page=: a listing reads page × PageSize dead letters.
// A later page asked for shows this one, which says so when there are
// older failed jobs.
const maxPage = 400

// failedList is the data of the failed jobs page.
type failedList struct {
	Queue, Kind string
	Queues      []string
	Jobs        []*bus.FailedJob
	Page        int
	// Newer and Older are the neighbouring pages' URLs; "" when none.
	Newer, Older string
	// Filtered says a queue or kind is chosen.
	Filtered bool
	// Query is the filter's query string, for the fragment and the links.
	Query string
	// Beyond when there are older failed jobs than the dashboard pages to
	// (maxPage); Command is then the `jetfleet queue failed` that lists
	// them all.
	Beyond  bool
	Command string
	// MaxPage is the last page the dashboard shows.
	MaxPage int
}

// listQuery reads the filter and the page from the URL.
func listQuery(r *http.Request) (queue, kind string, page int) {
	q := r.URL.Query()
	page, _ = strconv.Atoi(q.Get("page"))
	return q.Get("queue"), q.Get("kind"), min(max(page, 1), maxPage)
}

func (d *Dashboard) loadFailed(ctx context.Context, queue, kind string, page int) (*failedList, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	fl := &failedList{Queue: queue, Kind: kind, Page: page, Filtered: queue != "" || kind != "", MaxPage: maxPage}
	var err error
	if fl.Queues, err = d.in.Queues(ctx); err != nil {
		return fl, err
	}
	size := d.cfg.PageSize
	jobs, err := d.in.FailedJobs(ctx, bus.FailedFilter{Queue: queue, Kind: kind, Limit: page*size + 1})
	if err != nil {
		return fl, err
	}
	from := min((page-1)*size, len(jobs))
	fl.Jobs = jobs[from:min(from+size, len(jobs))]
	fl.Query = filterQuery(queue, kind, 0)
	base := d.cfg.Prefix + "/failed?"
	if page > 1 {
		fl.Newer = base + filterQuery(queue, kind, page-1)
	}
	switch {
	case len(jobs) <= page*size:
	case page < maxPage:
		fl.Older = base + filterQuery(queue, kind, page+1)
	default:
		fl.Beyond = true
		fl.Command = cliCommand("jetfleet queue failed", "--queue", queue, "--kind", kind, "--limit", "0")
	}
	return fl, nil
}

// filterQuery is the query string of a listing; page 0 or 1 is left out.
func filterQuery(queue, kind string, page int) string {
	v := url.Values{}
	if queue != "" {
		v.Set("queue", queue)
	}
	if kind != "" {
		v.Set("kind", kind)
	}
	if page > 1 {
		v.Set("page", strconv.Itoa(page))
	}
	return v.Encode()
}

func (d *Dashboard) serveFailed(w http.ResponseWriter, r *http.Request) {
	d.failedPage(w, r, false)
}

func (d *Dashboard) serveFailedFragment(w http.ResponseWriter, r *http.Request) {
	d.failedPage(w, r, true)
}

func (d *Dashboard) failedPage(w http.ResponseWriter, r *http.Request, fragment bool) {
	queue, kind, page := listQuery(r)
	fl, err := d.loadFailed(r.Context(), queue, kind, page)
	v := d.newView(r, "Failed jobs", "failed", fl)
	v.Live = d.cfg.Prefix + "/fragments/failed?" + filterQuery(queue, kind, page)
	v.Back = d.cfg.Prefix + "/failed?" + filterQuery(queue, kind, page)
	if err != nil {
		v.Problem = "Could not list the failed jobs: " + err.Error()
		writeListError(w, err, fragment)
	}
	d.render(w, "failed", v, fragment)
}

// jobDetail is the data of a failed job's page.
type jobDetail struct {
	Job *bus.FailedJob
	// Headers are the stored headers, sorted by name.
	Headers []header
	// Body is the body, indented when it is JSON; Binary when it is not
	// text (it is then shown quoted).
	Body   string
	Binary bool
}

type header struct{ Name, Value string }

func (d *Dashboard) serveJob(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	fj, err := d.in.FailedJob(ctx, r.PathValue("id"))
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, bus.ErrUnknownJob) || errors.Is(err, bus.ErrInvalid) {
			code = http.StatusNotFound
		}
		v := d.newView(r, "Failed job", "failed", nil)
		v.Problem = err.Error()
		w.WriteHeader(code)
		d.render(w, "job", v, false)
		return
	}
	v := d.newView(r, "Failed job "+fj.ID, "failed", newJobDetail(fj))
	v.Back = d.cfg.Prefix + "/failed"
	d.render(w, "job", v, false)
}

func newJobDetail(fj *bus.FailedJob) *jobDetail {
	jd := &jobDetail{Job: fj}
	for name, vs := range fj.Header {
		for _, v := range vs {
			jd.Headers = append(jd.Headers, header{name, v})
		}
	}
	slices.SortStableFunc(jd.Headers, func(a, b header) int { return strings.Compare(a.Name, b.Name) })
	var buf bytes.Buffer
	switch {
	case json.Valid(fj.Body) && json.Indent(&buf, fj.Body, "", "  ") == nil:
		jd.Body = buf.String()
	case utf8.Valid(fj.Body):
		jd.Body = string(fj.Body)
	default:
		jd.Body, jd.Binary = strconv.Quote(string(fj.Body)), true
	}
	return jd
}

func (d *Dashboard) postRetry(w http.ResponseWriter, r *http.Request) {
	d.jobAction(w, r, "retried", d.in.Retry)
}

func (d *Dashboard) postForget(w http.ResponseWriter, r *http.Request) {
	d.jobAction(w, r, "forgotten", d.in.Forget)
}

func (d *Dashboard) jobAction(w http.ResponseWriter, r *http.Request, done string, act func(context.Context, ...string) (int, error)) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	n, err := act(ctx, r.PathValue("id"))
	if err != nil {
		d.actionFailed(w, err)
		return
	}
	d.redirectDone(w, r, d.cfg.Prefix+"/failed", done, strconv.Itoa(n))
}

// postRetryAll retries every failed job of the form's queue and kind (all
// of them when both are empty).
func (d *Dashboard) postRetryAll(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*readTimeout)
	defer cancel()
	n, err := d.in.RetryAll(ctx, bus.FailedFilter{Queue: r.PostFormValue("queue"), Kind: r.PostFormValue("kind")})
	done := "retried"
	switch {
	case err == nil:
	case errors.Is(err, bus.ErrBatchCancelled) || errors.Is(err, bus.ErrUnknownQueue):
		// It went through DLQ, leaving the dead letters no worker would
		// run: the banner says some stay.
		d.cfg.Logger.Warn().Err(err).Int("retried", n).Msg("dashboard: retry all left the dead letters no worker would run")
		done = "retried-some"
	case n == 0:
		d.actionFailed(w, err)
		return
	default:
		d.cfg.Logger.Warn().Err(err).Int("retried", n).Msg("dashboard: retry all stopped early")
	}
	d.redirectDone(w, r, d.cfg.Prefix+"/failed", done, strconv.Itoa(n))
}

// isBadInput reports errors caused by the request: an invalid name, an
// unknown job or queue, a job the action does not apply to (finished, or
// of a cancelled batch).
// writeListError sets the status of a list page or its live fragment that
// could not be read: 400 for a query that will not get better, 503 for a
// fragment whose store did not answer (a page then shows the problem).
func writeListError(w http.ResponseWriter, err error, fragment bool) {
	switch {
	case isBadInput(err):
		w.WriteHeader(http.StatusBadRequest)
	case fragment:
		w.WriteHeader(http.StatusServiceUnavailable)
	}
}

func isBadInput(err error) bool {
	return errors.Is(err, bus.ErrInvalid) || errors.Is(err, bus.ErrUnknownJob) || errors.Is(err, bus.ErrUnknownQueue) ||
		errors.Is(err, bus.ErrJobNotFound) || errors.Is(err, bus.ErrJobFinished) || errors.Is(err, bus.ErrBatchCancelled)
}
