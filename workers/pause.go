package workers

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/bus"
)

// pauses tracks which of the worker's queues are paused. It follows the
// keys of its queues in bus.PauseBucket with a KV watch, so a pause or
// resume from any operator reaches every worker of the fleet as soon as
// the server pushes the change (milliseconds, not a poll interval).
type pauses struct {
	mu     sync.Mutex
	paused map[string]bool
	wake   chan<- struct{}
	log    zerolog.Logger
	w      jetstream.KeyWatcher
}

// initialPausesWait bounds the wait for the bucket's current values.
const initialPausesWait = 10 * time.Second

// watchPauses starts following the pause state of queues. It returns once
// the current state is known, so a worker started while a queue is paused
// never takes a job from it. Each change afterwards is logged and wakes
// the fetch loop (wake), so a resumed queue is fetched from at once. The
// watch ends with ctx.
func watchPauses(ctx context.Context, js jetstream.JetStream, cfg bus.Config, queues []string, wake chan<- struct{}, log zerolog.Logger) (*pauses, error) {
	kv, err := bus.OpenPauseBucket(ctx, js, cfg)
	if err != nil {
		return nil, fmt.Errorf("workers: %w", err)
	}
	w, err := kv.WatchFiltered(ctx, queues)
	if err != nil {
		return nil, fmt.Errorf("workers: watch %s: %w", bus.PauseBucket, err)
	}
	p := &pauses{paused: map[string]bool{}, wake: wake, log: log, w: w}
	timeout := time.After(initialPausesWait)
	for initial := true; initial; {
		select {
		case e, ok := <-w.Updates():
			if !ok || e == nil {
				initial = false
				break
			}
			p.apply(e)
		case <-timeout:
			_ = w.Stop()
			return nil, fmt.Errorf("workers: no reply from bucket %s within %s", bus.PauseBucket, initialPausesWait)
		}
	}
	go p.follow()
	return p, nil
}

func (p *pauses) follow() {
	for e := range p.w.Updates() {
		if e == nil {
			continue
		}
		p.apply(e)
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

func (p *pauses) apply(e jetstream.KeyValueEntry) {
	now := e.Operation() == jetstream.KeyValuePut && string(e.Value()) == bus.PausedValue
	p.mu.Lock()
	was := p.paused[e.Key()]
	p.paused[e.Key()] = now
	p.mu.Unlock()
	switch {
	case now && !was:
		p.log.Info().Str("queue", e.Key()).Msg("queue paused: taking no new job from it")
	case was && !now:
		p.log.Info().Str("queue", e.Key()).Msg("queue resumed")
	}
}

// isPaused reports whether queue is paused now.
func (p *pauses) isPaused(queue string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused[queue]
}

func (p *pauses) stop() { _ = p.w.Stop() }
