package bus

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestAppendRFC3339NanoMatchesTheStandardLibrary checks the records' time
// format against time.RFC3339Nano, byte for byte, on the edges (no
// fraction, trailing zeros, the first and last representable years) and
// on random times.
func TestAppendRFC3339NanoMatchesTheStandardLibrary(t *testing.T) {
	times := []time.Time{
		time.Date(2026, 11, 30, 19, 4, 5, 0, time.UTC),
		time.Date(2026, 1, 2, 3, 4, 5, 120000000, time.UTC),
		time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(2026, 6, 1, 0, 0, 0, 1, time.UTC),
		time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 100, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Now().In(time.FixedZone("x", 3600)).UTC(),
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		times = append(times, time.Unix(r.Int64N(1<<35), r.Int64N(1e9)).UTC())
	}
	for _, tm := range times {
		want := tm.AppendFormat(nil, time.RFC3339Nano)
		if got := appendRFC3339Nano(nil, tm); string(got) != string(want) {
			t.Fatalf("%v: got %s, want %s", tm, got, want)
		}
	}
}
