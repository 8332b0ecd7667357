// Package logtest records what a zerolog.Logger writes, so that tests can
// check what a package logged through its Config.Logger: a real logger
// writing JSON lines into memory, not a stand-in.
package logtest

import (
	"bytes"
	"encoding/json"
	"sync"

	"github.com/rs/zerolog"
)

// Recorder holds every line written to it. It is safe for concurrent use.
type Recorder struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// New returns a logger at debug level writing to a new Recorder.
func New() (zerolog.Logger, *Recorder) {
	r := &Recorder{}
	return zerolog.New(r).Level(zerolog.DebugLevel), r
}

// Write stores p; zerolog writes one event per call.
func (r *Recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Write(p)
}

// Entry is one logged event, its JSON decoded: "level", "message", "error"
// and the event's own fields.
type Entry map[string]any

// Str returns the string field key, or "" when it is missing or not a string.
func (e Entry) Str(key string) string {
	s, _ := e[key].(string)
	return s
}

// Entries decodes the events written so far, oldest first. A line that is
// not JSON is kept as an Entry whose "message" is the line.
func (r *Recorder) Entries() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Entry
	for _, line := range bytes.Split(r.buf.Bytes(), []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		e := Entry{}
		if json.Unmarshal(line, &e) != nil {
			e = Entry{"message": string(line)}
		}
		out = append(out, e)
	}
	return out
}

// Len is how many bytes have been written: 0 when nothing was logged.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.buf.Len()
}
