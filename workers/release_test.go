package workers_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/workers"
)

// releasing is a job whose handler releases it Releases times, then
// fails Fails times, then succeeds.
type releasing struct {
	Releases int `json:"releases"`
	Fails    int `json:"fails"`
}

func (releasing) Kind() string { return "releasing" }

type attempt struct {
	attempt, released int
	at                time.Time
}

// TestReleaseUsesNoTry: a job with tries 1 whose handler releases it twice
// and then succeeds runs 3 times and succeeds; a job with tries 2 that is
// released once and then fails twice is dead-lettered after 3 runs, and
// its dead letter says it used 2 tries and was released once.
func TestReleaseUsesNoTry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	var mu sync.Mutex
	runs := map[string][]attempt{}
	outcomes := map[string][]workers.Outcome{}
	w := workers.New(e.js, workers.Config{Backoff: []time.Duration{50 * time.Millisecond},
		OnOutcome: func(_, _ string, o workers.Outcome) {
			mu.Lock()
			defer mu.Unlock()
			outcomes["all"] = append(outcomes["all"], o)
		}})
	workers.Register(w, func(ctx context.Context, j *workers.Job[releasing]) error {
		mu.Lock()
		runs[j.ID] = append(runs[j.ID], attempt{j.Attempt, j.Released, time.Now()})
		mu.Unlock()
		switch {
		case j.Released < j.Args.Releases:
			return workers.Release(200 * time.Millisecond)
		case j.Attempt <= j.Args.Fails:
			return errors.New("not yet")
		}
		return nil
	})
	start(t, w)
	ok := dispatch(t, e, releasing{Releases: 2}, bus.Tries(1))
	dead := dispatch(t, e, releasing{Releases: 1, Fails: 2}, bus.Tries(2))
	waitFor(t, 15*time.Second, "both jobs end", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(runs[ok]) == 3 && len(deadLetters(t, e.js)) == 1
	})
	mu.Lock()
	defer mu.Unlock()
	want := []attempt{{1, 0, time.Time{}}, {1, 1, time.Time{}}, {1, 2, time.Time{}}}
	for i, r := range runs[ok] {
		if r.attempt != want[i].attempt || r.released != want[i].released {
			t.Errorf("tries 1, released twice: run %d was attempt %d released %d, want attempt %d released %d", i+1, r.attempt, r.released, want[i].attempt, want[i].released)
		}
		if i > 0 && r.at.Sub(runs[ok][i-1].at) < 200*time.Millisecond {
			t.Errorf("run %d came %s after the release of 200ms", i+1, r.at.Sub(runs[ok][i-1].at))
		}
	}
	want = []attempt{{1, 0, time.Time{}}, {1, 1, time.Time{}}, {2, 1, time.Time{}}}
	if len(runs[dead]) != 3 {
		t.Fatalf("tries 2, released once, failing twice: ran %d times, want 3", len(runs[dead]))
	}
	for i, r := range runs[dead] {
		if r.attempt != want[i].attempt || r.released != want[i].released {
			t.Errorf("tries 2: run %d was attempt %d released %d, want attempt %d released %d", i+1, r.attempt, r.released, want[i].attempt, want[i].released)
		}
	}
	dl := deadLetters(t, e.js)[0]
	if dl.Header.Get(bus.HeaderJobID) != dead || dl.Header.Get(bus.HeaderAttempts) != "2" || dl.Header.Get(bus.HeaderReleased) != "1" || dl.Header.Get(bus.HeaderTriesUsed) != "" {
		t.Errorf("dead letter headers %v: want Jetfleet-Attempts 2, Jetfleet-Released 1 and no Jetfleet-Tries-Used", dl.Header)
	}
	released := 0
	for _, o := range outcomes["all"] {
		if o == workers.Released {
			released++
		}
	}
	if released != 3 {
		t.Errorf("OnOutcome saw %d releases, want 3", released)
	}
	if n := natstest.StreamMsgs(t, e.js, bus.JobsStream); n != 0 {
		t.Errorf("JOBS still holds %d messages", n)
	}
}

// TestRegisterRefusesBadLimits: a limit below 1, a rate period under 1 ms,
// a nil key function or two caps on one kind are programming errors:
// Register panics with a message naming the kind, the option and the rule.
func TestRegisterRefusesBadLimits(t *testing.T) {
	t.Parallel()
	byUser := func(j *workers.Job[releasing]) string { return "u" }
	for _, c := range []struct {
		opts []workers.HandlerOption
		want string
	}{
		{[]workers.HandlerOption{workers.MaxConcurrent(0)}, "Register(releasing): MaxConcurrent(0): the limit must be at least 1"},
		{[]workers.HandlerOption{workers.MaxConcurrent(-2)}, "MaxConcurrent(-2): the limit must be at least 1"},
		{[]workers.HandlerOption{workers.MaxConcurrentBy(0, byUser)}, "MaxConcurrentBy(0): the limit must be at least 1"},
		{[]workers.HandlerOption{workers.MaxConcurrentBy[releasing](1, nil)}, "MaxConcurrentBy(1): the key function is nil"},
		{[]workers.HandlerOption{workers.RateLimit(0, time.Second)}, "RateLimit(0, 1s): the limit must be at least 1"},
		{[]workers.HandlerOption{workers.RateLimit(5, 0)}, "RateLimit(5, 0s): the period must be at least 1ms"},
		{[]workers.HandlerOption{workers.RateLimit(5, -time.Second)}, "the period must be at least 1ms"},
		{[]workers.HandlerOption{workers.RateLimitBy[releasing](5, time.Second, nil)}, "RateLimitBy(5, 1s): the key function is nil"},
		{[]workers.HandlerOption{workers.MaxConcurrent(2), workers.MaxConcurrentBy(1, byUser)}, "at most one concurrency cap"},
		{[]workers.HandlerOption{workers.RateLimit(2, time.Second), workers.RateLimit(3, time.Second)}, "one rate limit"},
		{[]workers.HandlerOption{workers.HandlerTries(-1)}, "Register(releasing): HandlerTries is -1 and HandlerTimeout 0s; neither may be negative"},
		{[]workers.HandlerOption{workers.HandlerTimeout(-time.Second)}, "HandlerTimeout -1s; neither may be negative"},
	} {
		got := func() (msg string) {
			defer func() { msg, _ = recover().(string) }()
			workers.Register(workers.New(nil, workers.Config{}), func(context.Context, *workers.Job[releasing]) error { return nil }, c.opts...)
			return ""
		}()
		if !strings.Contains(got, c.want) {
			t.Errorf("Register panicked with %q, want %q", got, c.want)
		}
	}
	// A cap and a rate limit together are fine.
	workers.Register(workers.New(nil, workers.Config{}), func(context.Context, *workers.Job[releasing]) error { return nil },
		workers.RateLimit(5, time.Second), workers.MaxConcurrentBy(1, byUser))
}

// TestRegisterAfterRunPanics: the handlers are read by running jobs
// without a lock, so registering one after Run started is a programming
// error named at once, not a data race whose jobs panic on a nil wrapper.
func TestRegisterAfterRunPanics(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	rec := &recorder{}
	w := workers.New(e.js, workers.Config{Middleware: []workers.Middleware{recordRuns(rec)}})
	workers.RegisterDiagnostics(w)
	stop := start(t, w)
	dispatch(t, e, workers.Noop{})
	waitFor(t, 10*time.Second, "a job run", func() bool { return len(rec.snapshot()) == 1 })
	got := func() (msg string) {
		defer func() { msg, _ = recover().(string) }()
		workers.Register(w, func(context.Context, *workers.Job[releasing]) error { return nil })
		return ""
	}()
	if want := "workers: Register(releasing) after Run"; !strings.Contains(got, want) {
		t.Errorf("Register after Run panicked with %q, want %q", got, want)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}
