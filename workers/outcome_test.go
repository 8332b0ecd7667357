package workers_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/workers"
)

// TestOnOutcomeReportsWhatTheServerConfirmed: a job that fails once is
// reported retried then succeeded; a permanent failure and a job of an
// unknown kind are dead-lettered; each with its queue and kind.
func TestOnOutcomeReportsEachSettledDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t, bus.Config{})
	var mu sync.Mutex
	var got []string
	w := workers.New(e.js, workers.Config{
		Tries: 3, Backoff: []time.Duration{10 * time.Millisecond},
		OnOutcome: func(queue, kind string, o workers.Outcome) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, queue+"/"+kind+"/"+string(o))
		},
	})
	workers.RegisterDiagnostics(w)
	dispatch(t, e, workers.Fail{Times: 1})
	dispatch(t, e, workers.Fail{Permanent: true})
	dispatch(t, e, record{Queue: "default"}) // no handler for "record"
	start(t, w)
	snapshot := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := slices.Clone(got)
		slices.Sort(out)
		return out
	}
	waitFor(t, 30*time.Second, "four outcomes", func() bool { return len(snapshot()) == 4 })
	want := []string{
		"default/jetfleet-fail/dead_lettered",
		"default/jetfleet-fail/retried",
		"default/jetfleet-fail/succeeded",
		"default/record/dead_lettered",
	}
	if g := snapshot(); !slices.Equal(g, want) {
		t.Fatalf("OnOutcome saw %v, want %v", g, want)
	}
}
