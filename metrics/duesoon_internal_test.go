package metrics

import (
	"testing"
	"time"
)

// TestDueIndexForgetsWhatIsPast: ready times already past are dropped (and
// a queue with none left), those within the window counted.
func TestDueIndexForgetsWhatIsPast(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	at := func(d time.Duration) int64 { return now.Add(d).UnixNano() }
	x := dueIndex{due: map[string][]int64{
		"a": {at(-time.Second), at(0), at(30 * time.Second), at(time.Minute), at(time.Hour)},
		"b": {at(-time.Minute)},
	}}
	got := x.count(now, time.Minute)
	if got["a"] != 2 || got["b"] != 0 {
		t.Errorf("counts %v, want a=2 (now and +30s; +1m is outside), b=0", got)
	}
	if len(x.due["a"]) != 4 {
		t.Errorf("kept %d ready times of a, want 4", len(x.due["a"]))
	}
	if _, ok := x.due["b"]; ok {
		t.Error("queue b, all past, still held")
	}
}
