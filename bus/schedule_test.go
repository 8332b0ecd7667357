package bus_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

func TestDelayedJobIsNotReadyEarly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "default")
	start := time.Now()
	id, err := d.Dispatch(ctx, welcomeEmail{UserID: 3}, bus.Delay(2*time.Second), bus.Tries(4))
	if err != nil {
		t.Fatalf("dispatch: %v", err)
	}
	// Poll until the job can be fetched; it must not come before 2 s.
	var m jetstream.Msg
	for m == nil && time.Since(start) < 10*time.Second {
		m = fetchOne(t, js, "default", 250*time.Millisecond)
	}
	if m == nil {
		t.Fatal("delayed job never became ready")
	}
	if waited := time.Since(start); waited < 2*time.Second {
		t.Fatalf("delayed job delivered after %s, before its 2s delay", waited)
	}
	job, err := bus.ParseJob(m)
	if err != nil {
		t.Fatal(err)
	}
	if job.ID != id || job.Tries != 4 || job.Kind != "send-welcome-email" {
		t.Fatalf("delayed job = %+v, want ID %s and tries 4", job, id)
	}
}

func TestDelayedDispatchDedupes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "default")
	for range 2 {
		if _, err := d.Dispatch(ctx, welcomeEmail{UserID: 3}, bus.Delay(time.Hour), bus.JobID("later")); err != nil {
			t.Fatal(err)
		}
	}
	if n := natstest.StreamMsgs(t, js, bus.JobsStream); n != 1 {
		t.Fatalf("JOBS holds %d schedules, want 1", n)
	}
}

func TestPeriodicJobFiresAndReRegisteringReplacesIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "default")
	if err := d.Schedule(ctx, "tick", "@every 1s", welcomeEmail{UserID: 1}); err != nil {
		t.Fatalf("schedule: %v", err)
	}
	for i := range 2 {
		if m := nextJob(t, js, 5*time.Second); m == nil || string(m.Data()) != `{"user_id":1}` {
			t.Fatalf("run %d of the periodic job: %v", i+1, m)
		}
	}
	// Register the same name twice more: still one schedule, the last one.
	for i := range 2 {
		if err := d.Schedule(ctx, "tick", "@every 1s", welcomeEmail{UserID: int64(10 + i)}); err != nil {
			t.Fatalf("re-register: %v", err)
		}
	}
	scheds, err := d.Schedules(ctx)
	if err != nil || len(scheds) != 1 {
		t.Fatalf("schedules = %+v, %v; want exactly one", scheds, err)
	}
	if s := scheds[0]; s.Name != "tick" || s.Spec != "@every 1s" || s.Queue != "default" || s.Kind != "send-welcome-email" || string(s.Body) != `{"user_id":11}` {
		t.Fatalf("schedule = %+v", s)
	}
	if n := scheduleMsgs(t, js); n != 1 {
		t.Fatalf("JOBS holds %d schedule messages, want the one the scheduler fires from", n)
	}
	// Runs come in stream order: once the replacement has fired, a left-over
	// schedule (user 1 or 10) would show between its runs.
	var after []string
	for len(after) < 3 {
		m := nextJob(t, js, 5*time.Second)
		if m == nil {
			t.Fatalf("runs after re-registering: %q, then none within 5s", after)
		}
		if body := string(m.Data()); len(after) > 0 || body == `{"user_id":11}` {
			after = append(after, body)
		}
	}
	if slices.ContainsFunc(after, func(b string) bool { return b != `{"user_id":11}` }) {
		t.Fatalf("runs after the replacement fired: %q, want only user 11's", after)
	}

	if err := d.Unschedule(ctx, "tick"); err != nil {
		t.Fatal(err)
	}
	if scheds, err := d.Schedules(ctx); err != nil || len(scheds) != 0 || scheduleMsgs(t, js) != 0 {
		t.Fatalf("after Unschedule: schedules %+v, %v, %d schedule messages; want none", scheds, err, scheduleMsgs(t, js))
	}
	drain(t, js, "default")
	// A sentinel the same scheduler fires 2s from now, two periods of the
	// schedule: a schedule still there would fire before it.
	if _, err := d.Dispatch(ctx, welcomeEmail{UserID: 99}, bus.Delay(2*time.Second), bus.JobID("sentinel")); err != nil {
		t.Fatal(err)
	}
	for {
		m := nextJob(t, js, 10*time.Second)
		if m == nil {
			t.Fatal("the delayed sentinel never came")
		}
		if m.Headers().Get(bus.HeaderJobID) == "sentinel" {
			break
		}
		t.Fatalf("the unscheduled job still fired: %s", m.Data())
	}
}

// TestRegisteringAnUnchangedScheduleKeepsItsRhythm: a service registers
// its schedules at every start; registering a schedule again unchanged
// writes nothing, so an "@every" schedule's next run, which the server
// counts from when its message was stored, is not pushed back. A change
// (spec, body, settings) replaces it.
func TestRegisteringAnUnchangedScheduleKeepsItsRhythm(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "default")
	stored := func() uint64 {
		t.Helper()
		s, err := js.Stream(ctx, bus.JobsStream)
		if err != nil {
			t.Fatal(err)
		}
		m, err := s.GetLastMsgForSubject(ctx, bus.SchedulePrefix+".every.hourly")
		if err != nil {
			t.Fatal(err)
		}
		return m.Sequence
	}
	register := func(spec string, user int64, opts ...bus.Option) {
		t.Helper()
		if err := d.Schedule(ctx, "hourly", spec, welcomeEmail{UserID: user}, opts...); err != nil {
			t.Fatal(err)
		}
	}
	register("@every 1h", 1, bus.Tries(2))
	first := stored()
	register("@every 1h", 1, bus.Tries(2))
	if again := stored(); again != first {
		t.Fatalf("the unchanged schedule was written again (sequence %d, then %d): its next run moved", first, again)
	}
	last := first
	for _, c := range []struct {
		what   string
		change func()
	}{
		{"spec", func() { register("@every 2h", 1, bus.Tries(2)) }},
		{"body", func() { register("@every 2h", 2, bus.Tries(2)) }},
		{"settings", func() { register("@every 2h", 2, bus.Tries(3)) }},
	} {
		what := c.what
		c.change()
		if now := stored(); now == last {
			t.Errorf("a schedule whose %s changed was not replaced", what)
		} else {
			last = now
		}
	}
}

// TestPeriodicRunIsFoundAndCancelledBySequence: each run of a periodic
// job has its JOBS sequence as its ID, so a run still waiting for a
// worker (none runs here) is found by that ID, as ready, and cancelling it
// by that ID removes that run alone.
func TestPeriodicRunIsFoundAndCancelledBySequence(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "default")
	in := newInspector(t, js)
	if err := d.Schedule(ctx, "tick", "@every 1s", welcomeEmail{UserID: 5}, bus.Tries(2)); err != nil {
		t.Fatalf("schedule: %v", err)
	}
	runs := storedRuns(t, js, bus.JobsPrefix+".default.>", 2, 10*time.Second)
	if err := d.Unschedule(ctx, "tick"); err != nil {
		t.Fatal(err)
	}
	first := strconv.FormatUint(runs[0], 10)
	st, err := in.Job(ctx, first)
	if err != nil {
		t.Fatalf("lookup of the first run by its sequence %s: %v", first, err)
	}
	if st.ID != first || st.Seq != runs[0] || st.State != bus.JobReady || st.Queue != "default" || st.Kind != "send-welcome-email" ||
		st.Tries != 2 || string(st.Body) != `{"user_id":5}` {
		t.Fatalf("first run = %+v; want ready, ID %s, tries 2", st, first)
	}
	if _, err := in.Cancel(ctx, first); err != nil {
		t.Fatalf("cancel of the first run by its sequence %s: %v", first, err)
	}
	s, err := js.Stream(ctx, bus.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetMsg(ctx, runs[0]); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("the cancelled run is still in JOBS (get: %v)", err)
	}
	if m, err := s.GetMsg(ctx, runs[1]); err != nil || m.Subject != "jobs.default.send-welcome-email" {
		t.Errorf("the second run: %+v, %v; want it left on jobs.default.send-welcome-email", m, err)
	}
	if st, err := in.Job(ctx, first); err != nil || st.State != bus.JobCancelled {
		t.Errorf("lookup after the cancel: %+v, %v; want cancelled", st, err)
	}
}

// TestScheduleOfTheOldLayoutStillRuns: a schedule registered before runs
// went to jobs.<queue>.<kind>, whose target holds an ID token, is still
// listed with its queue and kind, and its runs still reach the queue.
func TestScheduleOfTheOldLayoutStillRuns(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "default")
	old := &nats.Msg{Subject: bus.SchedulePrefix + ".every.legacy", Data: []byte(`{"user_id":6}`), Header: nats.Header{
		"Nats-Schedule":        {"@every 1s"},
		"Nats-Schedule-Target": {"jobs.default.send-welcome-email.J8i2VIrVekXaoZLUyGJYyM"},
		"Nats-Rollup":          {"sub"},
	}}
	if _, err := js.PublishMsg(ctx, old); err != nil {
		t.Fatal(err)
	}
	scheds, err := d.Schedules(ctx)
	if err != nil || len(scheds) != 1 || scheds[0].Name != "legacy" || scheds[0].Queue != "default" || scheds[0].Kind != "send-welcome-email" {
		t.Fatalf("schedules = %+v, %v; want legacy on default, send-welcome-email", scheds, err)
	}
	m := nextJob(t, js, 5*time.Second)
	if m == nil {
		t.Fatal("the old schedule did not run within 5s")
	}
	job, err := bus.ParseJob(m)
	if err != nil || job.Queue != "default" || job.Kind != "send-welcome-email" || string(job.Body) != `{"user_id":6}` {
		t.Fatalf("run of the old schedule: %+v, %v", job, err)
	}
}

// storedRuns waits until JOBS holds n messages on filter and returns the
// sequences of the first n.
func storedRuns(t *testing.T, js jetstream.JetStream, filter string, n int, wait time.Duration) []uint64 {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, bus.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for deadline := time.Now().Add(wait); len(seqs) < n; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("JOBS holds %d messages on %s after %s, want %d", len(seqs), filter, wait, n)
		}
		from := uint64(1)
		if len(seqs) > 0 {
			from = seqs[len(seqs)-1] + 1
		}
		for len(seqs) < n {
			m, err := s.GetMsg(ctx, from, jetstream.WithGetMsgSubject(filter))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			seqs, from = append(seqs, m.Sequence), m.Sequence+1
		}
	}
	return seqs
}

// nextJob fetches and acks the next job of the default queue, or returns
// nil after wait.
func nextJob(t *testing.T, js jetstream.JetStream, wait time.Duration) jetstream.Msg {
	t.Helper()
	m := fetchOne(t, js, "default", wait)
	if m != nil {
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// scheduleMsgs is how many periodic schedules JOBS holds.
func scheduleMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), bus.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(bus.SchedulePrefix+".every.>"))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

func TestScheduleValidation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, d := setup(t, bus.Config{})
	for spec, want := range map[string]string{
		"":             "schedule spec is empty",
		"@every 10ms":  "at least 1s",
		"@fortnightly": "unknown shortcut",
		"* * *":        "has 3 fields",
		// In form, but values the server refuses: the error names the spec.
		"61 * * * *": `schedule spec "61 * * * *": the server refuses it`,
		// Time zones: a known IANA name, before a cron expression.
		"CRON_TZ=Mars/Olympus 0 3 * * *":           `unknown time zone "Mars/Olympus"`,
		"CRON_TZ=Local 0 3 * * *":                  `needs an IANA time zone name`,
		"CRON_TZ= 0 3 * * *":                       `needs an IANA time zone name`,
		"CRON_TZ=Europe/Berlin":                    `must be followed by a space and the cron expression`,
		"CRON_TZ=Europe/Berlin @every 1m":          `@every runs the same in every zone`,
		"CRON_TZ=Europe/Berlin 3 * *":              `schedule spec "CRON_TZ=Europe/Berlin 3 * *": has 3 fields`,
		"CRON_TZ=Europe/Berlin 0 99 3 * * *":       `schedule spec "CRON_TZ=Europe/Berlin 0 99 3 * * *": the server refuses it`,
		"CRON_TZ=Europe/Berlin CRON_TZ=UTC @daily": `has 2 fields`,
	} {
		err := d.Schedule(ctx, "x", spec, welcomeEmail{})
		if !errors.Is(err, bus.ErrInvalid) || !strings.Contains(err.Error(), want) {
			t.Errorf("spec %q: err = %v, want %q", spec, err, want)
		}
	}
	if err := d.Schedule(ctx, "x", "@every 1m", welcomeEmail{}, bus.Delay(time.Second)); err == nil {
		t.Error("a delayed periodic job was accepted")
	}
	if err := d.Schedule(ctx, "Bad Name", "@every 1m", welcomeEmail{}); !errors.Is(err, bus.ErrInvalid) {
		t.Errorf("bad schedule name: err = %v", err)
	}
	if err := d.Schedule(ctx, "nightly", "30 2 * * *", welcomeEmail{}); err != nil {
		t.Errorf("5-field cron refused: %v", err)
	}
}

// TestACronScheduleRunsInItsTimeZone: a schedule for one second of the
// day in Asia/Kathmandu (UTC+5:45) fires at that second there, which in
// UTC is another time of day; ls shows the zone in the spec; registering
// it again unchanged writes nothing, and a change of zone alone replaces
// it.
func TestACronScheduleRunsInItsTimeZone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	js, d := setup(t, bus.Config{}, "default")
	kathmandu, err := time.LoadLocation("Asia/Kathmandu")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(4 * time.Second).In(kathmandu)
	cron := fmt.Sprintf("%d %d %d * * *", at.Second(), at.Minute(), at.Hour())
	spec := "CRON_TZ=Asia/Kathmandu " + cron
	if err := d.Schedule(ctx, "daily-report", spec, welcomeEmail{UserID: 5}); err != nil {
		t.Fatal(err)
	}
	scheds, err := d.Schedules(ctx)
	if err != nil || len(scheds) != 1 || scheds[0].Spec != spec {
		t.Fatalf("schedules = %+v, %v; want one with spec %q", scheds, err, spec)
	}
	m := nextJob(t, js, 15*time.Second)
	if m == nil {
		t.Fatalf("%q did not fire at %s (%s UTC)", spec, at.Format(time.TimeOnly), at.UTC().Format(time.TimeOnly))
	}
	if ran := time.Now(); ran.Before(at.Add(-time.Second)) || ran.After(at.Add(10*time.Second)) {
		t.Errorf("%q fired at %s, want at %s", spec, ran.In(kathmandu).Format(time.TimeOnly), at.Format(time.TimeOnly))
	}
	if string(m.Data()) != `{"user_id":5}` {
		t.Errorf("run body %s", m.Data())
	}

	stream, err := js.Stream(ctx, bus.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	stored := func() uint64 {
		t.Helper()
		m, err := stream.GetLastMsgForSubject(ctx, bus.SchedulePrefix+".every.daily-report")
		if err != nil {
			t.Fatal(err)
		}
		return m.Sequence
	}
	first := stored()
	if err := d.Schedule(ctx, "daily-report", spec, welcomeEmail{UserID: 5}); err != nil || stored() != first {
		t.Fatalf("registering it again unchanged: %v, sequence %d then %d; want nothing written", err, first, stored())
	}
	if err := d.Schedule(ctx, "daily-report", "CRON_TZ=Europe/Berlin "+cron, welcomeEmail{UserID: 5}); err != nil || stored() == first {
		t.Fatalf("registering it in another zone: %v, sequence still %d; want it replaced", err, first)
	}
	if scheds, err := d.Schedules(ctx); err != nil || len(scheds) != 1 || scheds[0].Spec != "CRON_TZ=Europe/Berlin "+cron {
		t.Fatalf("after the change: %+v, %v", scheds, err)
	}
}

func drain(t *testing.T, js jetstream.JetStream, queue string) {
	t.Helper()
	for m := fetchOne(t, js, queue, 100*time.Millisecond); m != nil; m = fetchOne(t, js, queue, 100*time.Millisecond) {
		_ = m.Ack()
	}
}
