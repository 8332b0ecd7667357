//go:build partition

package e2e

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// Kinds of recorded operations.
const (
	opDispatch = "dispatch" // bus.Dispatch; Key is the job ID
	opRun      = "run"      // a worker ran the job Key
	opWrite    = "write"    // session Key := Value through a web node
	opRead     = "read"     // session Key read through a web node
)

// ptOp is one client operation with its invoke and return times, measured
// from the start of the history.
type ptOp struct {
	Client int    // recording client, from 0
	Node   int    // the NATS node (and web node) the client is attached to
	Phase  string // the fault in force when it was invoked
	Kind   string
	Key    string
	Value  int64 // written, or read (0: the key was absent)
	OK     bool  // acknowledged (dispatch, write), answered (read)
	Err    string
	Call   time.Duration
	Return time.Duration
}

func (o ptOp) String() string {
	res := "ok"
	if !o.OK {
		res = "FAILED " + o.Err
	}
	return fmt.Sprintf("%9.3fs %9.3fs  c%-2d n%d %-15s %-8s %-10s %-12d %s",
		o.Call.Seconds(), o.Return.Seconds(), o.Client, o.Node+1, o.Phase, o.Kind, o.Key, o.Value, res)
}

// ptHistory records operations from many goroutines.
type ptHistory struct {
	start time.Time
	mu    sync.Mutex
	phase string
	ops   []ptOp
}

func newHistory() *ptHistory { return &ptHistory{start: time.Now(), phase: "steady"} }

func (h *ptHistory) now() time.Duration { return time.Since(h.start) }

func (h *ptHistory) setPhase(p string) {
	h.mu.Lock()
	h.phase = p
	h.mu.Unlock()
}

// invoke returns an operation stamped with its call time and the phase.
func (h *ptHistory) invoke(client, node int, kind, key string, value int64) ptOp {
	h.mu.Lock()
	defer h.mu.Unlock()
	return ptOp{Client: client, Node: node, Phase: h.phase, Kind: kind, Key: key, Value: value, Call: h.now()}
}

// complete stamps op's return time and records it.
func (h *ptHistory) complete(op ptOp, err error) {
	op.Return = h.now()
	op.OK = err == nil
	if err != nil {
		op.Err = err.Error()
	}
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

func (h *ptHistory) snapshot() []ptOp {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// kvInput and kvOutput are a session operation as porcupine sees it.
type kvInput struct {
	write bool
	value int64
}

// kvModel is one session key as a register: a write sets it, a read must
// return its value (0: absent, the state before any write).
var kvModel = porcupine.Model{
	Init: func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		in := input.(kvInput)
		if in.write {
			return true, in.value
		}
		return output.(int64) == state.(int64), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(kvInput)
		if in.write {
			return fmt.Sprintf("write(%d)", in.value)
		}
		return fmt.Sprintf("read() -> %d", output.(int64))
	},
	DescribeState: func(state any) string { return fmt.Sprint(state.(int64)) },
}

// linearizability checks the session operations of key with porcupine. A
// failed read tells nothing and is left out. A failed write may have been
// stored: it may take effect any time after its call, so its return is
// open, with two reductions that keep the verdict exact and the search
// small: a failed write whose value nobody read is left out (had it taken
// effect, a linearization can place it just before the next write, where
// no read sees it), and one whose value was read must have taken effect
// before the first such read returned, which becomes its return. On a
// violation it writes porcupine's HTML visualization and returns its path.
func linearizability(ops []ptOp, key string, timeout time.Duration) (porcupine.CheckResult, string, int) {
	firstRead := map[int64]time.Duration{}
	for _, o := range ops {
		if o.Key == key && o.Kind == opRead && o.OK && o.Value != 0 {
			if at, ok := firstRead[o.Value]; !ok || o.Return < at {
				firstRead[o.Value] = o.Return
			}
		}
	}
	var hist []porcupine.Operation
	for _, o := range ops {
		if o.Key != key || (o.Kind != opWrite && o.Kind != opRead) || (o.Kind == opRead && !o.OK) {
			continue
		}
		ret := o.Return.Nanoseconds()
		if o.Kind == opWrite && !o.OK {
			at, read := firstRead[o.Value]
			if !read {
				continue
			}
			ret = max(at.Nanoseconds(), o.Call.Nanoseconds())
		}
		hist = append(hist, porcupine.Operation{ClientId: o.Client, Input: kvInput{write: o.Kind == opWrite, value: o.Value},
			Call: o.Call.Nanoseconds(), Output: o.Value, Return: ret})
	}
	res, info := porcupine.CheckOperationsVerbose(kvModel, hist, timeout)
	if res != porcupine.Illegal {
		return res, "", len(hist)
	}
	f, err := os.CreateTemp("", "jetfleet-partition-"+key+"-*.html")
	if err != nil {
		return res, "(no visualization: " + err.Error() + ")", len(hist)
	}
	f.Close()
	path, _ := filepath.Abs(f.Name())
	if err := porcupine.VisualizePath(kvModel, info, path); err != nil {
		return res, "(no visualization: " + err.Error() + ")", len(hist)
	}
	return res, path, len(hist)
}

// writeSpan is when a written value took effect: after its call, and
// before ret, the earlier of the write's own return (when acknowledged)
// and the return of the first read that saw the value (a failed write that
// nobody read has no bound).
type writeSpan struct{ call, ret time.Duration }

func writeSpans(ops []ptOp) map[int64]writeSpan {
	w := map[int64]writeSpan{}
	for _, o := range ops {
		if o.Kind == opWrite {
			ret := time.Duration(math.MaxInt64)
			if o.OK {
				ret = o.Return
			}
			if old, ok := w[o.Value]; ok { // a read came first in return order
				ret = min(ret, old.ret)
			}
			w[o.Value] = writeSpan{o.Call, ret}
		}
	}
	for _, o := range ops {
		if o.Kind == opRead && o.OK && o.Value != 0 {
			if s, ok := w[o.Value]; ok && o.Return < s.ret {
				w[o.Value] = writeSpan{s.call, o.Return}
			}
		}
	}
	return w
}

// older reports whether the write of a surely took effect before the write
// of b began: a took effect (its write or a read of it returned) before b
// was called. Values are unique, and JetStream orders a key's writes in
// one log, so a read that returns a after b took effect went back in time.
func older(w map[int64]writeSpan, a, b int64) bool {
	if a == 0 {
		return b != 0
	}
	return w[a].ret < w[b].call
}

// sessionViolation is a read that broke a per-client guarantee.
type sessionViolation struct {
	rule string
	op   ptOp
	why  string
}

// clientGuarantees checks, per client, the guarantees a session gives one
// browser: read-your-writes (after its acknowledged write of v, a read
// returns v or a value written after v began) and monotonic reads (a read
// never returns a value surely older than one the client read before), and
// that every value read was written by someone.
func clientGuarantees(ops []ptOp) []sessionViolation {
	w := writeSpans(ops)
	type seen struct{ wrote, read int64 }
	last := map[int]*seen{}
	var bad []sessionViolation
	for _, o := range ops { // in return order per client: a client is sequential
		if o.Kind != opWrite && o.Kind != opRead {
			continue
		}
		s := last[o.Client]
		if s == nil {
			s = &seen{}
			last[o.Client] = s
		}
		switch {
		case o.Kind == opWrite && o.OK:
			s.wrote = o.Value
		case o.Kind == opRead && o.OK:
			if _, ok := w[o.Value]; o.Value != 0 && !ok {
				bad = append(bad, sessionViolation{"values", o, "read a value nobody wrote"})
			}
			if s.wrote != 0 && o.Value != s.wrote && older(w, o.Value, s.wrote) {
				bad = append(bad, sessionViolation{"read-your-writes", o, fmt.Sprintf("the client's own acknowledged write %d was newer", s.wrote)})
			}
			if s.read != 0 && o.Value != s.read && older(w, o.Value, s.read) {
				bad = append(bad, sessionViolation{"monotonic reads", o, fmt.Sprintf("the client had read the newer %d before", s.read)})
			}
			s.read = o.Value
		}
	}
	return bad
}

// staleReads are the reads that returned a value although a newer write of
// the same key had been acknowledged before the read began (to anyone): the
// reads a linearizable store would never serve.
func staleReads(ops []ptOp) []ptOp {
	w := writeSpans(ops)
	acked := map[string][]ptOp{}
	for _, o := range ops {
		if o.Kind == opWrite && o.OK {
			acked[o.Key] = append(acked[o.Key], o)
		}
	}
	var stale []ptOp
	for _, o := range ops {
		if o.Kind != opRead || !o.OK {
			continue
		}
		for _, wr := range acked[o.Key] {
			if wr.Return < o.Call && wr.Value != o.Value && older(w, o.Value, wr.Value) {
				stale = append(stale, o)
				break
			}
		}
	}
	return stale
}

// longestGaps is, per node, the longest time within [from, to] during
// which no operation of kind by that node's clients succeeded.
func longestGaps(ops []ptOp, nodes int, kind string, from, to time.Duration) []time.Duration {
	gaps := make([]time.Duration, nodes)
	for n := range nodes {
		var okAt []time.Duration
		for _, o := range ops {
			if o.Node == n && o.OK && (o.Kind == kind || (kind == opWrite && o.Kind == opRead)) && o.Return >= from && o.Return <= to {
				okAt = append(okAt, o.Return)
			}
		}
		slices.Sort(okAt)
		prev := from
		for _, at := range append(okAt, to) {
			gaps[n] = max(gaps[n], at-prev)
			prev = at
		}
	}
	return gaps
}

// formatHistory is ops, one a line, for a failure message.
func formatHistory(ops []ptOp, keep func(ptOp) bool) string {
	var b strings.Builder
	b.WriteString("     call     return  client node phase          kind     key        value        result\n")
	for _, o := range ops {
		if keep(o) {
			b.WriteString(o.String())
			b.WriteByte('\n')
		}
	}
	return b.String()
}
