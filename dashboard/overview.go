package dashboard

import (
	"context"
	"net/http"
	"time"

	"github.com/jetfleet/jetfleet/bus"
)

// overview is the data of the overview page.
type overview struct {
	Stats *bus.Stats
	// JobsPerMinute adds up the live workers' jobs that succeeded in about
	// the last minute; FailedPerMinute those dead-lettered.
	JobsPerMinute, FailedPerMinute uint64
	// FailedHour and FailedWeek count the dead letters in DLQ stored in
	// the last hour and 7 days (retried and forgotten ones have left).
	FailedHour, FailedWeek uint64
	Chart                  chart
	// Waiting lists the jobs held for a fleet-wide limit, per queue and
	// kind (limits.go).
	Waiting []waitingRow
}

// readTimeout bounds the reads of one page.
const readTimeout = 10 * time.Second

func (d *Dashboard) loadOverview(ctx context.Context) (*overview, error) {
	ctx, cancel := context.WithTimeout(ctx, readTimeout)
	defer cancel()
	st, err := d.in.Stats(ctx)
	if err != nil {
		return nil, err
	}
	o := &overview{Stats: st}
	for _, q := range st.Queues {
		o.JobsPerMinute += q.ProcessedLastMinute
		o.FailedPerMinute += q.FailedLastMinute
	}
	o.Waiting = waitingRows(st)
	if o.FailedHour, err = d.in.FailedSince(ctx, st.At.Add(-time.Hour)); err != nil {
		return nil, err
	}
	if o.FailedWeek, err = d.in.FailedSince(ctx, st.At.Add(-7*24*time.Hour)); err != nil {
		return nil, err
	}
	o.Chart = newChart(d.throughput(ctx, st.At), st.At)
	return o, nil
}

func (d *Dashboard) serveOverview(w http.ResponseWriter, r *http.Request) {
	d.overviewPage(w, r, false)
}

func (d *Dashboard) serveOverviewFragment(w http.ResponseWriter, r *http.Request) {
	d.overviewPage(w, r, true)
}

func (d *Dashboard) overviewPage(w http.ResponseWriter, r *http.Request, fragment bool) {
	o, err := d.loadOverview(r.Context())
	v := d.newView(r, "Overview", "overview", o)
	v.Live = d.cfg.Prefix + "/fragments/overview"
	v.Back = d.cfg.Prefix
	if err != nil {
		d.cfg.Logger.Warn().Err(err).Msg("dashboard: overview")
		v.Problem = "Could not read the queues from NATS: " + err.Error()
		v.Data = &overview{Stats: &bus.Stats{At: v.Now}, Chart: chart{Empty: true}}
		if fragment {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}
	d.render(w, "overview", v, fragment)
}

// postPause and postResume pause and resume a queue for the whole fleet.
func (d *Dashboard) postPause(w http.ResponseWriter, r *http.Request) {
	d.queueAction(w, r, "paused", d.in.Pause)
}

func (d *Dashboard) postResume(w http.ResponseWriter, r *http.Request) {
	d.queueAction(w, r, "resumed", d.in.Resume)
}

func (d *Dashboard) queueAction(w http.ResponseWriter, r *http.Request, done string, act func(context.Context, string) error) {
	queue := r.PathValue("queue")
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	if err := act(ctx, queue); err != nil {
		d.actionFailed(w, err)
		return
	}
	d.redirectDone(w, r, d.cfg.Prefix, done, queue)
}

// actionFailed answers a failed action: 400 for bad input (an unknown
// queue or job), 503 otherwise.
func (d *Dashboard) actionFailed(w http.ResponseWriter, err error) {
	code := http.StatusServiceUnavailable
	if isBadInput(err) {
		code = http.StatusBadRequest
	}
	d.cfg.Logger.Warn().Err(err).Msg("dashboard: action failed")
	http.Error(w, http.StatusText(code)+": "+err.Error(), code)
}
