package node

import (
	"context"
	"sync"
	"time"

	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// spanBatcher is the node's span processor: it exports ended spans in
// batches, as the SDK's BatchSpanProcessor does (OTEL_BSP_* are the same
// settings), but ending a span costs a lock and an append. The SDK's
// processor passes every span through a channel to its goroutine, whose
// wake-up per span (two per job: its dispatch and its attempt) cost a
// third of a worker's CPU when every span was sampled; this one wakes its
// goroutine once per full batch or schedule delay.
type spanBatcher struct {
	exp                sdktrace.SpanExporter
	delay, timeout     time.Duration
	maxQueue, maxBatch int
	log                zerolog.Logger

	mu       sync.Mutex
	queue    []sdktrace.ReadOnlySpan
	dropped  int
	warned   time.Time
	stopped  bool
	kick     chan struct{}      // a batch is full
	flushes  chan chan struct{} // ForceFlush
	stop     chan struct{}
	finished chan struct{}
}

// batchSettings are the SDK's defaults, which OTEL_BSP_* change.
type batchSettings struct {
	delay, timeout     time.Duration
	maxQueue, maxBatch int
}

func defaultBatchSettings() batchSettings {
	return batchSettings{delay: 5 * time.Second, timeout: 30 * time.Second, maxQueue: 2048, maxBatch: 512}
}

func newSpanBatcher(exp sdktrace.SpanExporter, s batchSettings, log zerolog.Logger) *spanBatcher {
	b := &spanBatcher{
		exp: exp, delay: s.delay, timeout: s.timeout, maxQueue: s.maxQueue, maxBatch: min(s.maxBatch, s.maxQueue), log: log,
		kick: make(chan struct{}, 1), flushes: make(chan chan struct{}), stop: make(chan struct{}), finished: make(chan struct{}),
	}
	go b.run()
	return b
}

// OnStart implements sdktrace.SpanProcessor; it does nothing.
func (b *spanBatcher) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd queues a sampled span; a full queue drops it (counted, logged).
func (b *spanBatcher) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return
	}
	b.mu.Lock()
	if b.stopped || len(b.queue) >= b.maxQueue {
		b.dropped++
		b.mu.Unlock()
		return
	}
	b.queue = append(b.queue, s)
	full := len(b.queue) == b.maxBatch
	b.mu.Unlock()
	if full {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
}

// run exports on every tick of the schedule delay and whenever a batch is
// full, until Shutdown.
func (b *spanBatcher) run() {
	defer close(b.finished)
	t := time.NewTicker(b.delay)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			b.exportAll()
			return
		case done := <-b.flushes:
			b.exportAll()
			close(done)
		case <-t.C:
			b.exportAll()
		case <-b.kick:
			b.exportAll()
		}
	}
}

// exportAll exports what is queued, a batch at a time.
func (b *spanBatcher) exportAll() {
	for {
		batch := b.take()
		if len(batch) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		_ = b.exp.ExportSpans(ctx, batch) // loggingExporter logs failures
		cancel()
	}
}

// take removes up to a batch from the queue, and logs spans dropped since
// the last warning (at most once a minute).
func (b *spanBatcher) take() []sdktrace.ReadOnlySpan {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 && time.Since(b.warned) >= time.Minute && !b.stopped {
		b.log.Warn().Int("spans_dropped", b.dropped).Int("queue_size", b.maxQueue).Msg("tracing: spans dropped, the export queue was full (OTEL_BSP_MAX_QUEUE_SIZE)")
		b.warned, b.dropped = time.Now(), 0
	}
	n := min(len(b.queue), b.maxBatch)
	if n == 0 {
		return nil
	}
	batch := make([]sdktrace.ReadOnlySpan, n)
	copy(batch, b.queue)
	b.queue = append(b.queue[:0], b.queue[n:]...)
	return batch
}

// ForceFlush exports every span ended so far.
func (b *spanBatcher) ForceFlush(ctx context.Context) error {
	done := make(chan struct{})
	select {
	case b.flushes <- done:
	case <-b.finished:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is queued, stops, and shuts the exporter down.
func (b *spanBatcher) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	already := b.stopped
	b.stopped = true
	b.mu.Unlock()
	if already {
		return nil
	}
	close(b.stop)
	select {
	case <-b.finished:
	case <-ctx.Done():
		return ctx.Err()
	}
	return b.exp.Shutdown(ctx)
}
