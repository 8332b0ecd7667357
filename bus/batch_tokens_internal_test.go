package bus

import (
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
)

// TestStampTokensKeepsTheLastPositions: a released job carries at most
// maxTokens positions, the newest last, each once, however many a job's
// header (anyone's to write) or its batch's outcomes bring.
func TestStampTokensKeepsTheLastPositions(t *testing.T) {
	token := func(from, n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf("%d-1-1", from+i)
		}
		return strings.Join(parts, ",")
	}
	m := &nats.Msg{Subject: "jobs.default.k", Header: nats.Header{HeaderCausalToken: {"0-1-5"}}}
	stampTokens(m, []string{token(1, 12_000), "0-1-5", token(20_000, 3)})
	got := strings.Split(m.Header.Get(HeaderCausalToken), ",")
	// The header's 0-1-5 falls out of the last 16, and comes back with the
	// outcome that brings it again.
	want := strings.Split(token(11_989, 12)+",0-1-5,"+token(20_000, 3), ",")
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("stamped %d positions %v..., want the last %d: %v", len(got), got[:min(len(got), 4)], maxTokens, want)
	}
	small := &nats.Msg{Subject: "jobs.default.k", Header: nats.Header{}}
	stampTokens(small, []string{"0-1-5", "0-1-5,1-2-3"})
	if got := small.Header.Get(HeaderCausalToken); got != "0-1-5,1-2-3" {
		t.Fatalf("stamped %q, want each position once: 0-1-5,1-2-3", got)
	}
}
