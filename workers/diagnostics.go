package workers

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Noop is the jetfleet-noop diagnostic job: it succeeds at once.
type Noop struct{}

// Kind implements bus.Args.
func (Noop) Kind() string { return "jetfleet-noop" }

// Sleep is the jetfleet-sleep diagnostic job: it sleeps MS milliseconds
// (or until its context ends), reporting its progress every tenth of the
// time (at most once a second), and succeeds with the result
// {"slept_ms": MS}.
type Sleep struct {
	MS int `json:"ms"`
}

// Kind implements bus.Args.
func (Sleep) Kind() string { return "jetfleet-sleep" }

// Fail is the jetfleet-fail diagnostic job. It fails its first Times
// attempts, or every attempt until Until has passed, and then succeeds
// (with the result {"attempts": N}); with neither set it always fails.
// Permanent makes each failure final. MS, when set, makes each attempt
// first sleep that many milliseconds, reporting progress as
// jetfleet-sleep does.
type Fail struct {
	Times     int       `json:"times,omitempty"`
	Until     time.Time `json:"until,omitzero"`
	Permanent bool      `json:"permanent,omitempty"`
	Message   string    `json:"message,omitempty"`
	MS        int       `json:"ms,omitempty"`
}

// Kind implements bus.Args.
func (Fail) Kind() string { return "jetfleet-fail" }

// RegisterDiagnostics registers the built-in diagnostic kinds
// (jetfleet-noop, jetfleet-sleep, jetfleet-fail), so a deployment can be
// smoke-tested with `jetfleet dispatch`.
func RegisterDiagnostics(w *Worker) {
	Register(w, func(context.Context, *Job[Noop]) error { return nil })
	Register(w, runSleep)
	Register(w, runFail)
}

func runSleep(ctx context.Context, job *Job[Sleep]) error {
	if err := sleepFor(ctx, job.Args.MS); err != nil {
		return err
	}
	return job.SetResult(map[string]int{"slept_ms": job.Args.MS})
}

// sleepFor sleeps ms milliseconds or until ctx ends, reporting progress
// every tenth of the time (at most once a second).
func sleepFor(ctx context.Context, ms int) error {
	total := time.Duration(ms) * time.Millisecond
	t := time.NewTimer(total)
	defer t.Stop()
	tick := time.NewTicker(min(max(total/10, time.Millisecond), time.Second))
	defer tick.Stop()
	began := time.Now()
	for {
		select {
		case <-t.C:
			return nil
		case <-tick.C:
			slept := time.Since(began)
			unit := time.Second
			if total < time.Minute {
				unit = 100 * time.Millisecond
			}
			_ = Progress(ctx, min(float64(slept)/float64(total), 1), fmt.Sprintf("slept %s of %s", slept.Round(unit), total))
		case <-ctx.Done():
			return fmt.Errorf("sleep of %dms cut short: %w", ms, ctx.Err())
		}
	}
}

func runFail(ctx context.Context, job *Job[Fail]) error {
	a := job.Args
	if a.MS > 0 {
		if err := sleepFor(ctx, a.MS); err != nil {
			return err
		}
	}
	failing := a.Times == 0 && a.Until.IsZero() ||
		a.Times > 0 && job.Attempt <= a.Times ||
		!a.Until.IsZero() && time.Now().Before(a.Until)
	if !failing {
		return job.SetResult(map[string]int{"attempts": job.Attempt})
	}
	msg := a.Message
	if msg == "" {
		msg = fmt.Sprintf("jetfleet-fail: attempt %d fails as asked", job.Attempt)
	}
	if a.Permanent {
		return Permanent(errors.New(msg))
	}
	return errors.New(msg)
}
