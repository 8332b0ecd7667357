package workers

import (
	"testing"
	"time"
)

// TestPrefetchFollowsThePaceOfHandlers: nothing is fetched ahead before a
// job has run; then as many jobs as the slots finish within prefetchBudget,
// capped at maxAhead; none for jobs longer than the budget.
func TestPrefetchFollowsThePaceOfHandlers(t *testing.T) {
	t.Parallel()
	p := &pace{}
	if n := p.prefetch(16); n != 0 {
		t.Errorf("before any job: prefetch %d, want 0", n)
	}
	cases := []struct {
		took time.Duration
		want int
	}{
		{time.Microsecond, maxAhead},  // 16 slots finish 16,000 in 1ms
		{100 * time.Microsecond, 160}, // 16 × 10
		{time.Millisecond, 16},        // one round of the slots
		{4 * time.Millisecond, 4},     // a quarter of them
		{50 * time.Millisecond, 0},    // long jobs: only for free slots
		{2 * time.Second, 0},          //
	}
	for _, c := range cases {
		p := &pace{}
		for range 100 {
			p.observe(c.took)
		}
		if n := p.prefetch(16); n != c.want {
			t.Errorf("handlers taking %s: prefetch %d, want %d", c.took, n, c.want)
		}
	}
	// One slow job among fast ones pulls the average up at once.
	p = &pace{}
	for range 100 {
		p.observe(time.Microsecond)
	}
	p.observe(10 * time.Second)
	if n := p.prefetch(16); n != 0 {
		t.Errorf("after a 10s job among 1µs jobs: prefetch %d, want 0", n)
	}
}
