package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/workers"
)

// TestQueueBatchCommands: `queue batches`, `queue batch <id>` (and a
// chain's ID) and `queue cancel --batch` on batches run by a real `jetfleet
// work`.
func TestQueueBatchCommands(t *testing.T) {
	f := newFleet(t)
	ctx := context.Background()
	jobs := make([]bus.DispatchManyParams, 20)
	for i := range jobs {
		jobs[i] = bus.DispatchManyParams{Args: workers.Noop{}}
	}
	jobs[7] = bus.DispatchManyParams{Args: workers.Fail{Permanent: true, Message: "seven fails"}}
	b, err := f.d.Batch(ctx, jobs, bus.BatchName("nightly import"), bus.Then(workers.Noop{}), bus.Catch(workers.Noop{}), bus.Finally(workers.Noop{}))
	if err != nil {
		t.Fatal(err)
	}
	chain, err := f.d.Chain(ctx, bus.Steps(workers.Noop{}, workers.Noop{}))
	if err != nil {
		t.Fatal(err)
	}
	f.startWorker(nil, "--queue", "default")
	in, err := bus.NewInspector(f.js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the batch and the chain finished", func() error {
		for _, id := range []string{b.ID, chain + "-2"} {
			if st, err := in.Batch(ctx, id); err != nil || !st.Done() {
				return fmt.Errorf("%s: %+v (%v)", id, st, err)
			}
		}
		return nil
	})

	r := f.jf("queue", "batches")
	if r.Code != 0 || !strings.Contains(r.Stdout, "ID  ") || !strings.Contains(r.Stdout, b.ID) || !strings.Contains(r.Stdout, "nightly import") {
		t.Fatalf("queue batches: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	line := lineWith(r.Stdout, b.ID)
	if f := strings.Fields(line); len(f) < 8 || f[3] != "20" || f[4] != "0" || f[5] != "1" || f[6] != "failed" {
		t.Fatalf("queue batches line of the batch: %q", line)
	}

	r = f.jf("queue", "batch", b.ID)
	for _, want := range []string{"state      failed", "20 total, 0 pending, 19 succeeded, 1 failed", "catch    default/jetfleet-noop", b.ID + "-7"} {
		if r.Code != 0 || !strings.Contains(r.Stdout, want) {
			t.Fatalf("queue batch lacks %q: %d\n%s%s", want, r.Code, r.Stdout, r.Stderr)
		}
	}
	if then := lineWith(r.Stdout, "then "); !strings.Contains(then, "waiting") {
		t.Fatalf("then of a failed batch: %q", then)
	}
	if r := f.jf("queue", "batch", b.ID, "--jobs", "all", "--limit", "5"); !strings.Contains(r.Stdout, "… (the first 5 of 20; --limit 0 lists all)") {
		t.Fatalf("queue batch --jobs all --limit 5 does not say it listed 5 of 20:\n%s", r.Stdout)
	}
	if r := f.jf("queue", "batch", b.ID, "--jobs", "all", "--limit", "20"); strings.Count(r.Stdout, b.ID+"-") != 20+3 || strings.Contains(r.Stdout, "the first") { // 20 jobs, 3 callbacks
		t.Fatalf("queue batch --jobs all --limit 20 of a batch of 20 says there are more:\n%s", r.Stdout)
	}
	r = f.jf("queue", "batch", b.ID, "--json", "--jobs", "all", "--limit", "0")
	var v struct {
		State     string `json:"state"`
		Succeeded int    `json:"succeeded"`
		Jobs      []struct{ State string }
		Callbacks []struct {
			Name     string
			Released bool
		}
	}
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil || v.State != "failed" || v.Succeeded != 19 || len(v.Jobs) != 20 || len(v.Callbacks) != 3 {
		t.Fatalf("queue batch --json: %v %+v\n%s", err, v, r.Stdout)
	}
	// snake_case keys, as every --json (encoding/json matches keys without
	// case, so the keys are checked as printed)
	if seven := `"index": 7,` + "\n" + `      "id": "` + b.ID + `-7",` + "\n" + `      "state": "failed"`; !strings.Contains(r.Stdout, seven) || strings.Contains(r.Stdout, `"Index"`) {
		t.Fatalf("queue batch --json: jobs not printed with the keys index, id, state:\n%s", r.Stdout)
	}

	// A chain's first step has the next step as its then: a callback with
	// next_step and the step's batch ID, no display text for a kind.
	r = f.jf("queue", "batch", chain, "--json")
	var c struct {
		Steps []struct {
			ID        string
			Callbacks []map[string]any
		}
	}
	if err := json.Unmarshal([]byte(r.Stdout), &c); err != nil || len(c.Steps) != 2 || len(c.Steps[0].Callbacks) != 1 {
		t.Fatalf("queue batch <chain> --json: %v\n%s", err, r.Stdout)
	}
	if cb := c.Steps[0].Callbacks[0]; cb["name"] != "then" || cb["next_step"] != true || cb["id"] != c.Steps[1].ID || cb["kind"] != nil || cb["released"] != true {
		t.Fatalf("the chain's first step has the callback %v, want then, next_step, id %s, no kind, released", cb, c.Steps[1].ID)
	}

	r = f.jf("queue", "batch", chain)
	if r.Code != 0 || !strings.Contains(r.Stdout, "Chain "+chain+": 2 of 2 steps dispatched") || strings.Count(r.Stdout, "state      succeeded") != 2 ||
		!strings.Contains(r.Stdout, "    then     next step                                dispatched "+chain+"-2") {
		t.Fatalf("queue batch <chain>: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}

	// Cancel: jobs on a queue nobody serves yet.
	held, err := f.d.Batch(ctx, []bus.DispatchManyParams{{Args: workers.Noop{}, Opts: []bus.Option{bus.OnQueue("later")}}})
	if err != nil {
		t.Fatal(err)
	}
	if r := f.jf("queue", "cancel", "--batch", held.ID); r.Code != 0 || !strings.Contains(r.Stdout, "Cancelled "+held.ID) {
		t.Fatalf("queue cancel: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := f.jf("queue", "batch", held.ID); !strings.Contains(r.Stdout, "state      cancelling (cancelled by an operator)") {
		t.Fatalf("queue batch after cancel:\n%s%s", r.Stdout, r.Stderr)
	}
	if r := f.jf("queue", "cancel", "--batch", b.ID); r.Code != 1 || !strings.Contains(r.Stderr, "has finished") {
		t.Fatalf("cancel of a finished batch: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := f.jf("queue", "batch", "nosuchbatch"); r.Code != 1 || !strings.Contains(r.Stderr, `no batch or chain "nosuchbatch"`) {
		t.Fatalf("queue batch of an unknown ID: %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := f.jf("queue", "cancel"); r.Code == 0 {
		t.Fatalf("queue cancel without --batch succeeded:\n%s", r.Stdout)
	}
}

// lineWith is the first line of s containing sub.
func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}
