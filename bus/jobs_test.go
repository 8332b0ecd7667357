package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/workers"
)

// TestListingShowsADeadJobWithAProgressRecordAsDead: a job that reported
// progress (a running record in the history) and then failed its last
// try (a dead letter, which writes no record) is listed as dead, as
// Inspector.Job says, not as running from its left-over record; and the
// workers do not list it as running.
func TestListingShowsADeadJobWithAProgressRecordAsDead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "default")
	in := newInspector(t, js)
	id, err := d.Dispatch(ctx, welcomeEmail{UserID: 9}, bus.Tries(1))
	if err != nil {
		t.Fatal(err)
	}
	w := workers.New(js, workers.Config{StopWhenEmpty: true})
	workers.Register(w, func(ctx context.Context, job *workers.Job[welcomeEmail]) error {
		if err := job.Progress(ctx, 0.5, "half way"); err != nil {
			return err
		}
		return errors.New("smtp: 550")
	})
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := w.Run(wctx); err != nil { // runs the job, then stops: the queue is empty
		t.Fatal(err)
	}
	// The job is dead and its latest record is still the running one its
	// progress wrote (Job copies that record's progress to the dead job).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st, err := in.Job(ctx, id)
		if err == nil && st.State == bus.JobDead && st.Progress != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: %+v, %v; want dead with the progress of its running record", id, st, err)
		}
	}
	s, err := js.Stream(ctx, bus.HistoryStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(ctx, bus.StatusSubject("default", "send-welcome-email", id))
	if err != nil {
		t.Fatal(err)
	}
	var rec bus.JobStatus
	if err := json.Unmarshal(m.Data, &rec); err != nil || rec.State != bus.JobRunning || rec.Progress == nil {
		t.Fatalf("the job's latest record is %s (%v); the test wants the running one its progress wrote", m.Data, err)
	}

	for _, f := range []bus.JobFilter{{}, {Queue: "default"}, {State: bus.JobDead}} {
		listed, err := in.Jobs(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if st := listedJob(listed, id); st == nil || st.State != bus.JobDead {
			t.Errorf("listing %+v: job %s is %s; want it listed as dead", f, id, stateOf(st))
		}
	}
	running, err := in.Jobs(ctx, bus.JobFilter{State: bus.JobRunning})
	if err != nil {
		t.Fatal(err)
	}
	if st := listedJob(running, id); st != nil {
		t.Errorf("the running jobs list job %s as %s", id, stateOf(st))
	}
}

// listedJob is the job id in listed; nil when it is not there.
func listedJob(listed []*bus.JobStatus, id string) *bus.JobStatus {
	for _, st := range listed {
		if st.ID == id {
			return st
		}
	}
	return nil
}

// stateOf is st's state, or "not listed" for nil.
func stateOf(st *bus.JobStatus) string {
	if st == nil {
		return "not listed"
	}
	return string(st.State)
}
