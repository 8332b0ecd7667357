//go:build partition

package e2e

import (
	"os"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The checks of TestPartitions must be able to fail: these histories are
// made by hand, one that a linearizable store may give and ones it may not.
func TestPartitionCheckersCatchViolations(t *testing.T) {
	s := time.Second
	op := func(client int, kind string, v int64, ok bool, call, ret time.Duration) ptOp {
		return ptOp{Client: client, Kind: kind, Key: "s0", Value: v, OK: ok, Call: call, Return: ret}
	}
	good := []ptOp{
		op(0, opWrite, 1, true, 0, 1*s),
		op(1, opWrite, 2, false, 2*s, 3*s), // failed, but read later: it took effect
		op(0, opRead, 2, true, 4*s, 5*s),
		op(1, opWrite, 3, false, 6*s, 7*s), // failed and never seen
		op(1, opRead, 2, true, 8*s, 9*s),
	}
	if res, _, _ := linearizability(good, "s0", time.Minute); res != porcupine.Ok {
		t.Errorf("linearizable history judged %v", res)
	}
	if bad := clientGuarantees(good); len(bad) != 0 || len(staleReads(good)) != 0 {
		t.Errorf("good history: guarantees %v, stale %v", bad, staleReads(good))
	}

	stale := []ptOp{
		op(0, opWrite, 1, true, 0, 1*s),
		op(1, opWrite, 2, true, 2*s, 3*s),
		op(1, opRead, 1, true, 4*s, 5*s), // the older value, after its own write
		op(1, opRead, 0, true, 6*s, 7*s), // then nothing at all
	}
	res, vis, _ := linearizability(stale, "s0", time.Minute)
	if res != porcupine.Illegal || vis == "" {
		t.Errorf("stale read judged %v (visualization %q), want Illegal", res, vis)
	}
	os.Remove(vis)
	bad := clientGuarantees(stale)
	rules := map[string]int{}
	for _, v := range bad {
		rules[v.rule]++
	}
	if rules["read-your-writes"] != 2 || rules["monotonic reads"] != 1 || len(staleReads(stale)) != 2 {
		t.Errorf("stale history: violations %v, stale reads %v; want 2 read-your-writes, 1 monotonic, 2 stale", bad, staleReads(stale))
	}
	// A read orders writes too: c1 read 1, then wrote 2 and read it; c2's
	// later read of 1 is stale although the writes of 1 and 2 overlapped.
	byRead := []ptOp{
		op(0, opWrite, 1, true, 0, 3*s),
		op(1, opRead, 1, true, 1*s, 2*s),
		op(1, opWrite, 2, true, 2500*time.Millisecond, 4*s),
		op(2, opRead, 1, true, 5*s, 6*s),
	}
	if res, vis, _ := linearizability(byRead, "s0", time.Minute); res != porcupine.Illegal || len(staleReads(byRead)) != 1 {
		t.Errorf("stale by a read's order: porcupine %v, stale %v; want Illegal and 1 stale read", res, staleReads(byRead))
	} else {
		os.Remove(vis)
	}
	if bad := clientGuarantees([]ptOp{op(0, opRead, 42, true, 0, s)}); len(bad) != 1 || bad[0].rule != "values" {
		t.Errorf("a value nobody wrote: %v", bad)
	}
}
