package workers

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/bus"
)

// listen subscribes to the job control subjects: a cancel of one job
// (bus.CancelPrefix), a question about one job (bus.LocatePrefix), the
// question about every running job (bus.RunningSubject) and a cancel of a
// queue (bus.QueueCancelPrefix). Every worker process receives each of
// them; only the one that runs a job acts on it. The subscriptions end
// with stop.
func (t *tracker) listen() error {
	for _, subject := range []string{bus.CancelPrefix + ".*", bus.LocatePrefix + ".*", bus.RunningSubject, bus.QueueCancelPrefix + ".*"} {
		sub, err := t.nc.Subscribe(subject, t.control)
		if err != nil {
			t.stop()
			return fmt.Errorf("workers: subscribe to %s: %w", subject, err)
		}
		t.subs = append(t.subs, sub)
	}
	return nil
}

func (t *tracker) stop() {
	for _, sub := range t.subs {
		_ = sub.Unsubscribe()
	}
	t.subs = nil
}

// control handles one control message.
func (t *tracker) control(m *nats.Msg) {
	switch {
	case m.Subject == bus.RunningSubject:
		t.answerRunning(m)
	case strings.HasPrefix(m.Subject, bus.CancelPrefix+"."):
		t.cancelJob(m, strings.TrimPrefix(m.Subject, bus.CancelPrefix+"."))
	case strings.HasPrefix(m.Subject, bus.LocatePrefix+"."):
		if jr := t.lookup(strings.TrimPrefix(m.Subject, bus.LocatePrefix+".")); jr != nil && m.Reply != "" {
			t.answer(m, jr.record(bus.JobRunning, time.Now()))
		}
	case strings.HasPrefix(m.Subject, bus.QueueCancelPrefix+"."):
		t.cancelQueue(m, strings.TrimPrefix(m.Subject, bus.QueueCancelPrefix+"."))
	}
}

func (t *tracker) lookup(token string) *jobRun {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.running[token]
}

// cancelJob remembers the cancelled ID (a job of it fetched but not
// started is refused when it starts) and cancels the attempt running here,
// answering with its record when asked.
func (t *tracker) cancelJob(m *nats.Msg, token string) {
	now := time.Now()
	t.mu.Lock()
	if _, seen := t.cancelled[token]; !seen {
		t.cancelled[token] = struct{}{}
		t.order = append(t.order, cancelMark{token, now})
	}
	t.forgetOldCancels(now)
	jr := t.running[token]
	t.mu.Unlock()
	if jr == nil {
		return
	}
	if jr.cancelRun() {
		t.log.Info().Str("job_id", jr.job.ID).Str("queue", jr.job.Queue).Str("kind", jr.job.Kind).Int("attempt", jr.job.Attempt).Msg("job cancel received: cancelling its context")
	}
	if m.Reply != "" {
		t.answer(m, jr.record(bus.JobRunning, now))
	}
}

// forgetOldCancels drops the cancels older than cancelMemory, and the
// oldest beyond maxCancelMemory. t.mu is held.
func (t *tracker) forgetOldCancels(now time.Time) {
	drop := 0
	for drop < len(t.order) && (now.Sub(t.order[drop].at) > cancelMemory || len(t.order)-drop > maxCancelMemory) {
		delete(t.cancelled, t.order[drop].token)
		drop++
	}
	t.order = t.order[drop:]
	for q, cut := range t.cuts {
		if now.Sub(cut.at) > cancelMemory {
			delete(t.cuts, q)
		}
	}
}

// cancelQueue cancels the attempts of queue stored up to the message's
// sequence, and refuses such jobs later.
func (t *tracker) cancelQueue(m *nats.Msg, queue string) {
	var body struct {
		UpToSeq uint64 `json:"up_to_seq"`
	}
	if json.Unmarshal(m.Data, &body) != nil || body.UpToSeq == 0 {
		return
	}
	now := time.Now()
	var hit []*jobRun
	t.mu.Lock()
	t.forgetOldCancels(now)
	if body.UpToSeq > t.cuts[queue].upTo {
		t.cuts[queue] = queueCut{upTo: body.UpToSeq, at: now}
	}
	for _, jr := range t.running {
		if jr.job.Queue == queue && jr.job.Seq <= body.UpToSeq {
			hit = append(hit, jr)
		}
	}
	t.mu.Unlock()
	for _, jr := range hit {
		jr.cancelRun()
	}
	if len(hit) > 0 {
		t.log.Info().Str("queue", queue).Int("jobs", len(hit)).Msg("queue cancel received: cancelling its running jobs")
	}
}

// answerRunning answers with the records of every job running here (an
// empty list too, so the asker knows this worker answered).
func (t *tracker) answerRunning(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	t.mu.Lock()
	runs := make([]*jobRun, 0, len(t.running))
	for _, jr := range t.running {
		runs = append(runs, jr)
	}
	t.mu.Unlock()
	now := time.Now()
	b := []byte{'['}
	for i, jr := range runs {
		if i > 0 {
			b = append(b, ',')
		}
		b = jr.record(bus.JobRunning, now).AppendJSON(b)
	}
	b = append(b, ']')
	if err := m.Respond(b); err != nil {
		t.log.Debug().Err(err).Msg("could not answer for the running jobs")
	}
}

func (t *tracker) answer(m *nats.Msg, st *bus.JobStatus) {
	if err := m.Respond(st.AppendJSON(nil)); err != nil {
		t.log.Debug().Err(err).Str("job_id", st.ID).Msg("could not answer for a job")
	}
}
