package node_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/node"
)

// countingWriter records what is written to it and in how many calls.
type countingWriter struct {
	mu    sync.Mutex
	b     bytes.Buffer
	calls int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	return w.b.Write(p)
}

func (w *countingWriter) state() (string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String(), w.calls
}

func TestLogWriterHoldsInfoLinesAndWritesThemInOneBatch(t *testing.T) {
	out := &countingWriter{}
	lw := node.NewLogWriter(out, time.Hour) // only Flush, Close or a warn line writes
	log := node.NewLogger(lw, "info", "json")
	for i := range 100 {
		log.Info().Int("n", i).Msg("job succeeded")
	}
	if got, calls := out.state(); got != "" || calls != 0 {
		t.Fatalf("info lines written at once (%d calls): %.80s", calls, got)
	}
	if err := lw.Flush(); err != nil {
		t.Fatal(err)
	}
	got, calls := out.state()
	if calls != 1 {
		t.Errorf("100 lines in %d writes, want 1", calls)
	}
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != 100 {
		t.Fatalf("%d lines written, want 100", len(lines))
	}
	for i, l := range lines {
		var line struct{ N int }
		if err := json.Unmarshal([]byte(l), &line); err != nil || line.N != i {
			t.Fatalf("line %d is %q (%v), want n=%d: lines out of order or torn", i, l, err, i)
		}
	}
}

func TestLogWriterWritesAWarningAtOnceWithTheLinesBeforeIt(t *testing.T) {
	out := &countingWriter{}
	lw := node.NewLogWriter(out, time.Hour)
	log := node.NewLogger(lw, "info", "json")
	log.Info().Msg("job succeeded")
	log.Warn().Msg("job failed; will retry")
	got, _ := out.state()
	if !strings.Contains(got, "job succeeded") || !strings.Contains(got, "will retry") ||
		strings.Index(got, "job succeeded") > strings.Index(got, "will retry") {
		t.Fatalf("after a warning the writer holds %q, want both lines, in order", got)
	}
	log.Error().Msg("job dead-lettered")
	if got, _ := out.state(); !strings.Contains(got, "dead-lettered") {
		t.Fatalf("an error line was held: %q", got)
	}
}

func TestLogWriterWritesHeldLinesWithinItsInterval(t *testing.T) {
	out := &countingWriter{}
	lw := node.NewLogWriter(out, 20*time.Millisecond)
	defer lw.Close()
	log := node.NewLogger(lw, "info", "json")
	log.Info().Msg("worker started")
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got, _ := out.state(); strings.Contains(got, "worker started") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("a held line was not written 10 s after it was logged (interval 20 ms)")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLogWriterBatchesConcurrentLinesWithoutTearingThem(t *testing.T) {
	out := &countingWriter{}
	lw := node.NewLogWriter(out, 10*time.Millisecond)
	log := node.NewLogger(lw, "info", "json")
	const goroutines, each = 16, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				log.Info().Int("g", g).Int("i", i).Msg("job succeeded")
			}
		})
	}
	wg.Wait()
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	got, calls := out.state()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != goroutines*each {
		t.Fatalf("%d lines written, want %d", len(lines), goroutines*each)
	}
	next := make([]int, goroutines) // each goroutine's lines in its order
	for _, l := range lines {
		var line struct{ G, I int }
		if err := json.Unmarshal([]byte(l), &line); err != nil {
			t.Fatalf("torn line %q: %v", l, err)
		}
		if line.I != next[line.G] {
			t.Fatalf("goroutine %d: line %d came where %d was due", line.G, line.I, next[line.G])
		}
		next[line.G]++
	}
	// 8,000 lines of about 80 bytes: a batch goes out every 10 ms or
	// every 64 KiB, so far fewer writes than lines.
	if calls > len(lines)/10 {
		t.Errorf("%d lines in %d writes: not batched", len(lines), calls)
	}
	t.Logf("%d lines in %d writes", len(lines), calls)
}

func TestLogWriterWritesAtOnceWhenItHoldsItsBound(t *testing.T) {
	out := &countingWriter{}
	lw := node.NewLogWriter(out, time.Hour)
	line := []byte(strings.Repeat("x", 1023) + "\n")
	for range 64 {
		if _, err := lw.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	if got, calls := out.state(); len(got) != 64*1024 || calls != 1 {
		t.Fatalf("after 64 KiB of lines %d bytes in %d writes, want all of them in 1", len(got), calls)
	}
}

func TestLogWriterAfterCloseAndWithNoIntervalWritesEachLine(t *testing.T) {
	for _, tc := range []struct {
		name  string
		every time.Duration
		close bool
	}{{"closed", time.Hour, true}, {"interval 0", 0, false}} {
		t.Run(tc.name, func(t *testing.T) {
			out := &countingWriter{}
			lw := node.NewLogWriter(out, tc.every)
			if tc.close {
				if err := lw.Close(); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 3 {
				fmt.Fprintf(lw, "line %d\n", i)
				if got, calls := out.state(); calls != i+1 || !strings.HasSuffix(got, fmt.Sprintf("line %d\n", i)) {
					t.Fatalf("line %d: %d writes, %q", i, calls, got)
				}
			}
		})
	}
}

func TestProcessLoggerReadsTheFlushInterval(t *testing.T) {
	env := map[string]string{}
	for _, v := range []string{"", "0", "1h"} {
		env["LOG_FLUSH_INTERVAL"] = v
		out := &countingWriter{}
		lw, log, err := node.NewProcessLogger(func(k string) string { return env[k] }, out)
		if err != nil {
			t.Fatal(err)
		}
		log.Info().Msg("hello")
		got, _ := out.state()
		if held := !strings.Contains(got, `"message":"hello"`); held != (v == "1h") {
			t.Errorf("LOG_FLUSH_INTERVAL=%q: line held %v, want %v", v, held, v == "1h")
		}
		lw.Close()
		if got, _ := out.state(); !strings.Contains(got, `"message":"hello"`) {
			t.Errorf("LOG_FLUSH_INTERVAL=%q: the line was not written by Close: %q", v, got)
		}
	}

	env["LOG_FLUSH_INTERVAL"] = "soon"
	if _, _, err := node.NewProcessLogger(func(k string) string { return env[k] }, &countingWriter{}); err == nil || !strings.Contains(err.Error(), "LOG_FLUSH_INTERVAL") {
		t.Fatalf("a bad interval gave %v, want an error naming LOG_FLUSH_INTERVAL", err)
	}
}

// TestProcessLoggerReadsLaravelLevels: LOG_LEVEL takes Laravel's level
// names as well as zerolog's; an unknown level or format is an error
// naming the setting, not a logger at info.
func TestProcessLoggerReadsLaravelLevels(t *testing.T) {
	for level, infoShown := range map[string]bool{"": true, "debug": true, "notice": true, "INFO": true, "warning": false, "warn": false, "critical": false, "emergency": false} {
		out := &countingWriter{}
		lw, log, err := node.NewProcessLogger(func(k string) string {
			return map[string]string{"LOG_LEVEL": level, "LOG_FORMAT": "json"}[k]
		}, out)
		if err != nil {
			t.Fatalf("LOG_LEVEL=%q: %v", level, err)
		}
		log.Info().Msg("an info line")
		log.Error().Msg("an error line")
		lw.Close()
		got, _ := out.state()
		if strings.Contains(got, "an info line") != infoShown || !strings.Contains(got, "an error line") {
			t.Errorf("LOG_LEVEL=%q wrote %q; info line shown should be %v, the error line always", level, got, infoShown)
		}
	}
	for setting, v := range map[string]string{"LOG_LEVEL": "verbose", "LOG_FORMAT": "xml"} {
		_, _, err := node.NewProcessLogger(func(k string) string {
			if k == setting {
				return v
			}
			return ""
		}, &countingWriter{})
		if err == nil || !strings.Contains(err.Error(), setting) {
			t.Errorf("%s=%s: %v, want an error naming it", setting, v, err)
		}
	}
}
