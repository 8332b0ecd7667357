package node

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// countingExporter records the size of each export and signals it.
type countingExporter struct {
	mu      sync.Mutex
	batches []int
	got     chan int
}

func (e *countingExporter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	e.mu.Lock()
	e.batches = append(e.batches, len(spans))
	e.mu.Unlock()
	e.got <- len(spans)
	return nil
}

func (e *countingExporter) Shutdown(context.Context) error { return nil }

// TestSpanBatcherExportsFullBatchesAtOnceAndTheRestAtShutdown: with an
// hour's schedule delay, a full batch is exported as soon as it is full;
// the remainder at Shutdown; spans beyond the queue are dropped, not
// blocked on; unsampled spans are not queued.
func TestSpanBatcherExportsFullBatchesAtOnceAndTheRestAtShutdown(t *testing.T) {
	exp := &countingExporter{got: make(chan int, 10)}
	b := newSpanBatcher(exp, batchSettings{delay: time.Hour, timeout: time.Second, maxQueue: 10, maxBatch: 4}, zerolog.Nop())
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(b))
	off := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(b), sdktrace.WithSampler(sdktrace.NeverSample()))
	end := func(tp *sdktrace.TracerProvider, n int) {
		for range n {
			_, span := tp.Tracer("test").Start(context.Background(), "s")
			span.End()
		}
	}
	end(off, 5)
	end(tp, 4)
	if n := <-exp.got; n != 4 {
		t.Fatalf("first export: %d spans, want the full batch of 4", n)
	}
	end(tp, 1)
	if err := b.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	end(tp, 3) // after Shutdown: dropped
	exp.mu.Lock()
	defer exp.mu.Unlock()
	if len(exp.batches) != 2 || exp.batches[1] != 1 {
		t.Errorf("batches %v, want [4 1]", exp.batches)
	}
}
