package dashboard

import (
	"context"
	"errors"
	"net/http"

	"github.com/jetfleet/jetfleet/bus"
)

// The batches pages: every batch JOBS holds with its progress, and one
// batch (or a chain's step) with its callbacks, its failed and pending
// jobs and a cancel button. Both refresh themselves.

// batchRoutes are the routes of the batches pages, under the prefix p.
func (d *Dashboard) batchRoutes(p string) map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		"GET " + p + "/batches":                d.serveBatches,
		"GET " + p + "/fragments/batches":      d.serveBatchesFragment,
		"GET " + p + "/batches/{id}":           d.serveBatch,
		"GET " + p + "/fragments/batches/{id}": d.serveBatchFragment,
		"POST " + p + "/batches/{id}/cancel":   d.postCancelBatch,
	}
}

// batchList is the data of the batches page.
type batchList struct {
	Batches []bus.BatchStatus
}

// batchDetail is the data of one batch's page.
type batchDetail struct {
	Batch bus.BatchStatus
	// Jobs are its failed jobs, then its pending ones, at most a page.
	Jobs []bus.BatchJobState
	// More says there are more such jobs than the page shows.
	More bool
}

func (d *Dashboard) serveBatches(w http.ResponseWriter, r *http.Request) { d.batchesPage(w, r, false) }

func (d *Dashboard) serveBatchesFragment(w http.ResponseWriter, r *http.Request) {
	d.batchesPage(w, r, true)
}

func (d *Dashboard) batchesPage(w http.ResponseWriter, r *http.Request, fragment bool) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	list, err := d.in.Batches(ctx)
	v := d.newView(r, "Batches", "batches", &batchList{Batches: list})
	v.Live = d.cfg.Prefix + "/fragments/batches"
	v.Back = d.cfg.Prefix + "/batches"
	if err != nil {
		d.cfg.Logger.Warn().Err(err).Msg("dashboard: batches")
		v.Problem = "Could not read the batches from NATS: " + err.Error()
		if fragment {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}
	d.render(w, "batches", v, fragment)
}

func (d *Dashboard) serveBatch(w http.ResponseWriter, r *http.Request) { d.batchPage(w, r, false) }

func (d *Dashboard) serveBatchFragment(w http.ResponseWriter, r *http.Request) {
	d.batchPage(w, r, true)
}

func (d *Dashboard) batchPage(w http.ResponseWriter, r *http.Request, fragment bool) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	id := r.PathValue("id")
	bd, err := d.loadBatch(ctx, id)
	v := d.newView(r, "Batch "+id, "batches", bd)
	v.Live = d.cfg.Prefix + "/fragments/batches/" + id
	v.Back = d.cfg.Prefix + "/batches/" + id
	if err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, bus.ErrUnknownBatch) || errors.Is(err, bus.ErrInvalid) {
			code = http.StatusNotFound
		}
		v.Problem = err.Error()
		v.Data = nil
		w.WriteHeader(code)
	}
	d.render(w, "batch", v, fragment)
}

func (d *Dashboard) loadBatch(ctx context.Context, id string) (*batchDetail, error) {
	st, err := d.in.Batch(ctx, id)
	if err != nil {
		return nil, err
	}
	bd := &batchDetail{Batch: st}
	limit := d.cfg.PageSize
	if bd.Jobs, err = d.in.BatchJobs(ctx, id, limit+1, "failed"); err != nil {
		return nil, err
	}
	if len(bd.Jobs) <= limit {
		pending, err := d.in.BatchJobs(ctx, id, limit+1-len(bd.Jobs), "pending")
		if err != nil {
			return nil, err
		}
		bd.Jobs = append(bd.Jobs, pending...)
	}
	if len(bd.Jobs) > limit {
		bd.Jobs, bd.More = bd.Jobs[:limit], true
	}
	return bd, nil
}

// postCancelBatch cancels a batch: its pending jobs are skipped.
func (d *Dashboard) postCancelBatch(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	if err := d.in.CancelBatch(ctx, id); err != nil {
		if errors.Is(err, bus.ErrUnknownBatch) || errors.Is(err, bus.ErrBatchFinished) {
			err = errors.Join(bus.ErrInvalid, err) // the request's fault: 400
		}
		d.actionFailed(w, err)
		return
	}
	d.redirectDone(w, r, d.cfg.Prefix+"/batches/"+id, "batch-cancelled", id)
}
