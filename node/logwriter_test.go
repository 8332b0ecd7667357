package node_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/node"
)

// lockedBuffer is a bytes.Buffer safe for the LogWriter's goroutine and
// the test's reads, counting the writes it gets.
type lockedBuffer struct {
	mu     sync.Mutex
	b      bytes.Buffer
	writes int
	gate   chan struct{} // when set, each write waits for it to close
	delay  time.Duration // each write takes this long
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	if b.gate != nil {
		<-b.gate
	}
	time.Sleep(b.delay)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.writes++
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestLogWriterKeepsEveryLineInOrder(t *testing.T) {
	out := &lockedBuffer{}
	lw := node.NewLogWriter(out)
	const writers, lines = 8, 5000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				fmt.Fprintf(lw, "w%d %d\n", w, i)
			}
		}()
	}
	wg.Wait()
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	next := make([]int, writers)
	got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(got) != writers*lines {
		t.Fatalf("%d lines written, want %d", len(got), writers*lines)
	}
	for _, line := range got {
		var w, i int
		if _, err := fmt.Sscanf(line, "w%d %d", &w, &i); err != nil {
			t.Fatalf("line %q mangled: %v", line, err)
		}
		if i != next[w] {
			t.Fatalf("writer %d: line %d came after line %d", w, i, next[w]-1)
		}
		next[w]++
	}
	if out.writes >= writers*lines {
		t.Errorf("%d writes for %d lines: the lines were not batched", out.writes, writers*lines)
	}
	t.Logf("%d lines in %d writes", writers*lines, out.writes)
}

func TestLogWriterWritesErrorsAtOnce(t *testing.T) {
	out := &lockedBuffer{delay: 50 * time.Millisecond}
	lw := node.NewLogWriter(out)
	defer lw.Close()
	log := zerolog.New(lw)
	log.Info().Msg("before")
	log.Error().Msg("the last words")
	s := out.String()
	if !strings.Contains(s, "before") || !strings.Contains(s, "the last words") {
		t.Fatalf("an error line returned before it and the line before it were written: %q", s)
	}
	if strings.Index(s, "before") > strings.Index(s, "the last words") {
		t.Fatalf("lines out of order: %q", s)
	}
}

func TestLogWriterBoundsWhatWaits(t *testing.T) {
	gate := make(chan struct{})
	out := &lockedBuffer{gate: gate}
	lw := node.NewLogWriter(out)
	line := []byte(strings.Repeat("x", 1023) + "\n")
	var queued atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1024 { // 1 MiB, four times the bound
			lw.Write(line)
			queued.Add(1)
		}
	}()
	// Nothing can be written: the goroutine's first write waits at the
	// gate with the batch it took; the writers fill the bound once more
	// and must then wait.
	for prev := int64(-1); prev != queued.Load(); {
		prev = queued.Load()
		time.Sleep(100 * time.Millisecond)
	}
	if n := queued.Load(); n > 2*256+1 {
		t.Fatalf("%d KiB queued while nothing could be written", n)
	}
	close(gate)
	<-done
	if err := lw.Close(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "\n"); got != 1024 {
		t.Fatalf("%d lines written, want 1024", got)
	}
}
