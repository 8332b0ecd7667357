package node

import (
	"io"
	"sync"

	"github.com/rs/zerolog"
)

// LogWriter passes log lines on to another writer from a goroutine of its
// own: a busy worker writes many lines with one write system call instead
// of one each (a job's log line cost more in its write than in anything
// else it did). An idle process writes each line a moment after it is
// logged. Lines keep their order. Errors and worse (WriteLevel) are
// written before the call returns, so a process's last words are not
// left in memory. What waits is bounded: a writer finding maxPendingLog
// bytes waiting blocks until they are written.
//
// Close (or Flush) it before the process exits; lines logged after Close
// are written directly.
type LogWriter struct {
	w io.Writer

	// wmu is held while writing to w, so that batches go out in order.
	wmu   sync.Mutex
	spare []byte // the buffer of the batch written last (under wmu)

	mu      sync.Mutex
	room    sync.Cond // signalled when pending has been taken
	pending []byte
	closed  bool
	kick    chan struct{} // there is something pending (buffered, coalescing)
	done    chan struct{} // the goroutine has ended
}

// maxPendingLog bounds the log lines waiting to be written.
const maxPendingLog = 256 << 10

// NewLogWriter starts a LogWriter writing to w.
func NewLogWriter(w io.Writer) *LogWriter {
	lw := &LogWriter{w: w, kick: make(chan struct{}, 1), done: make(chan struct{})}
	lw.room.L = &lw.mu
	go lw.run()
	return lw
}

// Write queues p, a whole log line, for writing; it copies p.
func (lw *LogWriter) Write(p []byte) (int, error) {
	lw.mu.Lock()
	for !lw.closed && len(lw.pending) >= maxPendingLog {
		lw.room.Wait()
	}
	if lw.closed {
		lw.mu.Unlock()
		lw.wmu.Lock()
		defer lw.wmu.Unlock()
		return lw.w.Write(p)
	}
	lw.pending = append(lw.pending, p...)
	select {
	case lw.kick <- struct{}{}:
	default:
	}
	lw.mu.Unlock()
	return len(p), nil
}

// WriteLevel is Write for lines below zerolog.ErrorLevel; an error, fatal
// or panic line is written, with every line before it, before it returns.
func (lw *LogWriter) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	n, err := lw.Write(p)
	if err != nil || level < zerolog.ErrorLevel || level >= zerolog.NoLevel {
		return n, err
	}
	return n, lw.Flush()
}

// Flush writes every line queued so far.
func (lw *LogWriter) Flush() error {
	lw.wmu.Lock()
	defer lw.wmu.Unlock()
	lw.mu.Lock()
	batch := lw.pending
	lw.pending = lw.spare[:0]
	lw.room.Broadcast()
	lw.mu.Unlock()
	if len(batch) == 0 {
		lw.spare = batch
		return nil
	}
	_, err := lw.w.Write(batch)
	if cap(batch) <= 2*maxPendingLog {
		lw.spare = batch[:0]
	} else {
		lw.spare = nil
	}
	return err
}

// Close writes what is queued and stops the goroutine; later lines are
// written directly.
func (lw *LogWriter) Close() error {
	lw.mu.Lock()
	if lw.closed {
		lw.mu.Unlock()
		return nil
	}
	lw.closed = true
	close(lw.kick)
	lw.mu.Unlock()
	<-lw.done
	return lw.Flush()
}

func (lw *LogWriter) run() {
	defer close(lw.done)
	for range lw.kick {
		_ = lw.Flush() // the lines are lost either way; the next write tries again
	}
}
