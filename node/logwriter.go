package node

import (
	"io"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// logWriterMax is how many bytes a LogWriter holds before it writes them
// at once; a writer that cannot keep up slows the lines' callers down
// rather than letting the lines pile up in memory.
const logWriterMax = 64 << 10

// LogWriter writes a process's log lines to w in batches: a line waits at
// most the flush interval, and a line at warn level or above is written at
// once, with every line before it. A worker writes a line per job; with
// one write system call each, that can be a quarter of its CPU per job
// (docs/benchmarks.md). Lines keep their order. A process that is killed
// loses the lines of the last interval (a "job succeeded" line is then no
// longer written before the job is acknowledged); Close (or Flush) before
// exiting writes what is held.
//
// NewLogger writes JSON through it and, when the writer beneath is a
// terminal, the console format straight to that terminal.
type LogWriter struct {
	out   io.Writer
	every time.Duration

	wmu sync.Mutex // held while writing to out: batches go out in order

	mu     sync.Mutex
	buf    []byte
	spare  []byte
	armed  bool // a flush is scheduled for what buf holds
	closed bool
	timer  *time.Timer
}

// NewLogWriter returns a LogWriter over w holding lines for at most every;
// every ≤ 0 writes each line at once.
func NewLogWriter(w io.Writer, every time.Duration) *LogWriter {
	lw := &LogWriter{out: w, every: every}
	lw.timer = time.AfterFunc(time.Hour, func() { _ = lw.Flush() })
	lw.timer.Stop()
	return lw
}

// Write holds p (zerolog reuses it once Write returns, so it is copied) for
// the next batch.
func (w *LogWriter) Write(p []byte) (int, error) {
	return w.WriteLevel(zerolog.NoLevel, p)
}

// WriteLevel implements zerolog.LevelWriter: a line at warn level or
// above goes out at once, with the lines held before it.
func (w *LogWriter) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	w.mu.Lock()
	if w.closed || w.every <= 0 {
		w.mu.Unlock()
		w.wmu.Lock()
		defer w.wmu.Unlock()
		return w.out.Write(p)
	}
	w.buf = append(w.buf, p...)
	now := len(w.buf) >= logWriterMax || (level >= zerolog.WarnLevel && level <= zerolog.PanicLevel)
	if !now && !w.armed {
		w.armed = true
		w.timer.Reset(w.every)
	}
	w.mu.Unlock()
	if now {
		return len(p), w.Flush()
	}
	return len(p), nil
}

// Flush writes the lines held so far.
func (w *LogWriter) Flush() error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.mu.Lock()
	out := w.buf
	w.buf, w.spare = w.spare[:0], nil
	w.armed = false
	w.mu.Unlock()
	if len(out) == 0 {
		w.putBack(out)
		return nil
	}
	_, err := w.out.Write(out)
	w.putBack(out)
	return err
}

// putBack keeps a written batch's buffer for the next one, unless it grew
// past the bound.
func (w *LogWriter) putBack(b []byte) {
	if cap(b) > logWriterMax*2 {
		return
	}
	w.mu.Lock()
	w.spare = b[:0]
	w.mu.Unlock()
}

// Close writes the lines held; lines written after it go out at once.
func (w *LogWriter) Close() error {
	w.mu.Lock()
	w.closed = true
	w.timer.Stop()
	w.mu.Unlock()
	return w.Flush()
}
