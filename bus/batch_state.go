package bus

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
)

// What a batch stores (batch.go): its definition, its summary and the
// chunks of two-bit job states, and the transitions of the summary that
// release its callbacks.

// flowMsg is a message a batch publishes when one of its callbacks is
// released: a callback job, or the definition, summary and jobs of a
// chain's next step. Bodies are JSON (jobs' by contract).
type flowMsg struct {
	Subject string          `json:"subject"`
	Header  nats.Header     `json:"header,omitempty"`
	Body    json.RawMessage `json:"body"`
}

func (m flowMsg) msg() *nats.Msg {
	h := make(nats.Header, len(m.Header)+4)
	for k, v := range m.Header {
		h[k] = slices.Clone(v)
	}
	return &nats.Msg{Subject: m.Subject, Header: h, Data: m.Body}
}

// batchDef is batches.<id>.def.
type batchDef struct {
	ID            string    `json:"id"`
	Name          string    `json:"name,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	AllowFailures bool      `json:"allow_failures,omitempty"`
	Then          []flowMsg `json:"then,omitempty"`
	Catch         []flowMsg `json:"catch,omitempty"`
	Finally       []flowMsg `json:"finally,omitempty"`
	// OnFailure is released with finally when the batch finished with a
	// failure (and no AllowFailures) or cancelled: a chain's own finally.
	OnFailure []flowMsg `json:"on_failure,omitempty"`
	Chain     *chainRef `json:"chain,omitempty"`
}

// chainRef places a batch in a chain.
type chainRef struct {
	ID    string `json:"id"`
	Step  int    `json:"step"`
	Steps int    `json:"steps"`
}

// batchSum is batches.<id>.sum.
type batchSum struct {
	Name  string `json:"name,omitempty"`
	Total int    `json:"total"`
	// Chunks is the job count of each chunk; jobs added to a running
	// batch start a new chunk.
	Chunks []int `json:"chunks"`
	// Done holds, per chunk, its counts once all its jobs finished.
	Done         []*chunkCounts `json:"done"`
	Sealed       bool           `json:"sealed"`
	Cancelled    bool           `json:"cancelled,omitempty"`
	CancelReason string         `json:"cancel_reason,omitempty"`
	FailedSeen   bool           `json:"failed_seen,omitempty"`
	CatchFired   bool           `json:"catch_fired,omitempty"`
	Finished     bool           `json:"finished,omitempty"`
	CreatedAt    time.Time      `json:"created_at"`
	FinishedAt   time.Time      `json:"finished_at,omitzero"`
}

// chunkCounts are the outcomes of a chunk's jobs.
type chunkCounts struct {
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
	Skipped   int `json:"skipped"`
}

func (s *batchSum) allDone() bool {
	for i := range s.Chunks {
		if i >= len(s.Done) || s.Done[i] == nil {
			return false
		}
	}
	return true
}

// doneCounts adds up the counts of the chunks that are done.
func (s *batchSum) doneCounts() chunkCounts {
	var c chunkCounts
	for _, d := range s.Done {
		if d != nil {
			c.Succeeded += d.Succeeded
			c.Failed += d.Failed
			c.Skipped += d.Skipped
		}
	}
	return c
}

// addChunks appends chunks for n jobs and returns the index of the first.
func (s *batchSum) addChunks(n int) int {
	first := len(s.Chunks) * BatchChunkSize
	for n > 0 {
		c := min(n, BatchChunkSize)
		s.Chunks = append(s.Chunks, c)
		s.Done = append(s.Done, nil)
		n -= c
	}
	return first
}

// advance applies the transitions the summary allows now and returns the
// callback messages they release, in order.
func (s *batchSum) advance(def *batchDef) []flowMsg {
	if s.Finished {
		return nil
	}
	var out []flowMsg
	if s.FailedSeen && !s.CatchFired && !def.AllowFailures && !s.Cancelled {
		s.CatchFired = true
		out = append(out, def.Catch...)
	}
	if s.Sealed && s.allDone() {
		s.Finished, s.FinishedAt = true, time.Now().UTC()
		if thenReleased(def, s, s.doneCounts()) {
			out = append(out, def.Then...)
		} else {
			out = append(out, def.OnFailure...)
		}
		out = append(out, def.Finally...)
	}
	return out
}

// thenReleased reports whether a finished batch whose jobs ended as c
// releases Then: it is not cancelled, and every job succeeded, or failed
// or was cancelled with AllowFailures. A job cancelled on its own counts
// as skipped: the batch did not do all its work.
func thenReleased(def *batchDef, s *batchSum, c chunkCounts) bool {
	return !s.Cancelled && (c.Failed == 0 && c.Skipped == 0 || def.AllowFailures)
}

// newSum is the first summary of a batch of n jobs.
func newSum(n int, sealed bool) *batchSum {
	s := &batchSum{Sealed: sealed, CreatedAt: time.Now().UTC()}
	s.addChunks(n)
	s.Total = n
	return s
}

// chunk is a chunk's job states, two bits per job.
type chunk []byte

func newChunk() chunk { return make(chunk, BatchChunkSize/4) }

func (c chunk) get(i int) int { return int(c[i/4]>>(uint(i%4)*2)) & 3 }

func (c chunk) set(i, state int) { c[i/4] |= byte(state&3) << (uint(i%4) * 2) }

// counts counts the states of the chunk's first n jobs; done says whether
// all n have one.
func (c chunk) counts(n int) (cc chunkCounts, done bool) {
	pending := 0
	for i := range n {
		switch c.get(i) {
		case stateSucceeded:
			cc.Succeeded++
		case stateFailed:
			cc.Failed++
		case stateSkipped:
			cc.Skipped++
		default:
			pending++
		}
	}
	return cc, pending == 0
}
