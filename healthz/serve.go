package healthz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// DrainOptions times the drain sequence of Serve. The zero value is the
// recommended setting.
type DrainOptions struct {
	// DrainDelay is how long the node keeps serving, answering 503 on /up,
	// so the balancer notices and takes it out before the listener closes.
	// Make it longer than the balancer's check interval times its fall
	// count. Zero: 5s. Negative: no delay.
	DrainDelay time.Duration
	// Grace is how long http.Server.Shutdown waits for in-flight requests
	// once the listener is closed. Zero or negative: 30s.
	Grace time.Duration
	// Logger receives each step of the drain at info level: its start
	// (requests in flight, the delay before the listener closes), the
	// shutdown (requests in flight, the grace) and its end. The zero value
	// logs nothing.
	Logger zerolog.Logger
}

func (o DrainOptions) withDefaults() DrainOptions {
	switch {
	case o.DrainDelay == 0:
		o.DrainDelay = 5 * time.Second
	case o.DrainDelay < 0:
		o.DrainDelay = 0
	}
	if o.Grace <= 0 {
		o.Grace = 30 * time.Second
	}
	return o
}

// Serve runs srv on ln until ctx ends, then drains: Drain at once (/up says
// 503), every response from then on carries "Connection: close" (so
// clients reconnect through the balancer), new requests still served for
// DrainDelay so the balancer takes the node out, then srv.Shutdown, which
// closes the listener and idle connections and waits up to Grace for
// in-flight requests.
//
// Idle keep-alive connections are left open until Shutdown rather than
// closed when the drain begins: a balancer may be writing a request on one
// at that very moment, and a POST lost that way cannot be resent. Serve
// wraps srv.Handler to do this, so set the handler before calling it.
//
// An agent port served by ServeAgent on the same ctx stays open, saying
// "drain", until Serve returns.
//
// It returns nil after a clean drain (or when srv was shut down by someone
// else), an error when srv fails to serve, and an error wrapping
// context.DeadlineExceeded when requests were still running after Grace;
// their connections are then closed. A second signal that should exit at
// once is the caller's business: it can simply exit.
func (h *Health) Serve(ctx context.Context, srv *http.Server, ln net.Listener, opts DrainOptions) error {
	defer h.startServing(ctx)()
	opts = opts.withDefaults()
	srv.Handler = h.closeWhenDraining(srv.Handler)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return serveError(err)
	case <-ctx.Done():
	}
	h.Drain()
	opts.Logger.Info().Int("in_flight", h.InFlight()).Str("drain_delay", opts.DrainDelay.String()).
		Msgf("healthz: draining: /up answers 503, requests in flight: %d, closing the listener in %s", h.InFlight(), opts.DrainDelay)
	delay := time.NewTimer(opts.DrainDelay)
	defer delay.Stop()
	select {
	case err := <-served:
		return serveError(err)
	case <-delay.C:
	}
	opts.Logger.Info().Int("in_flight", h.InFlight()).Str("grace", opts.Grace.String()).
		Msgf("healthz: shutting down: requests in flight: %d, grace %s", h.InFlight(), opts.Grace)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opts.Grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-served // http.ErrServerClosed, at once after Shutdown began
	if err != nil {
		left := h.InFlight()
		srv.Close()
		return fmt.Errorf("healthz: shutdown: grace of %s ran out with %d request(s) in flight: %w", opts.Grace, left, err)
	}
	opts.Logger.Info().Msg("healthz: drained")
	return nil
}

// closeWhenDraining makes each response of a draining node close its
// connection once it is written.
func (h *Health) closeWhenDraining(next http.Handler) http.Handler {
	if next == nil {
		next = http.DefaultServeMux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.Draining() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

func serveError(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("healthz: serve: %w", err)
}

// serving is a Serve call in progress: the context whose end starts its
// drain, and a channel closed when it returns.
type serving struct {
	ctx  context.Context
	done chan struct{}
}

// startServing records a Serve call on ctx; call the func it returns when
// that Serve returns.
func (h *Health) startServing(ctx context.Context) (finish func()) {
	s := &serving{ctx: ctx, done: make(chan struct{})}
	h.mu.Lock()
	h.serves[s] = struct{}{}
	h.mu.Unlock()
	return func() {
		h.mu.Lock()
		delete(h.serves, s)
		h.mu.Unlock()
		close(s.done)
	}
}

// drainsInProgress returns the done channels of the Serve calls whose
// context has ended: those draining, or about to.
func (h *Health) drainsInProgress() []chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	var done []chan struct{}
	for s := range h.serves {
		if s.ctx.Err() != nil {
			done = append(done, s.done)
		}
	}
	return done
}

// agentLife is the context ServeAgent answers under. It ends when ctx
// ends or, when Serve calls on h are draining by then (their own context
// has ended too, as when both share the signal's), once they have all
// returned: the agent port must not close while the node still serves, or
// HAProxy would read a refused connection instead of "drain". Call stop
// when ServeAgent returns.
func (h *Health) agentLife(ctx context.Context) (life context.Context, stop func()) {
	life, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stopAfter := context.AfterFunc(ctx, func() {
		for _, done := range h.drainsInProgress() {
			<-done
		}
		cancel()
	})
	return life, func() { stopAfter(); cancel() }
}

// ServeAgent answers HAProxy agent-check connections on ln until ctx ends,
// then closes ln and returns nil (or an error when ln fails). When Serve
// is draining h because its context ended too (both run on the signal's
// context), the agent keeps answering, "drain", until Serve has returned:
// through the drain delay and the grace, so that HAProxy sets the node's
// weight to 0 at once rather than reading a refused connection (L4CON),
// which leaves the weight as it was. Each connection gets one line and is
// closed:
//
//   - "ready up" when the node can serve, followed by a weight such as
//     "80%" when Config.AgentMaxInFlight is set;
//   - "drain" when draining;
//   - "down#<reason>" when a critical check fails.
//
// "ready" cancels a drain or maintenance state set through the agent, and
// "up" cancels an earlier "down": without it HAProxy would keep the server
// down after the dependency recovers. Use it as
//
//	server web1 10.0.0.1:8080 check agent-check agent-port 8081 agent-inter 2s
func (h *Health) ServeAgent(ctx context.Context, ln net.Listener) error {
	life, stopLife := h.agentLife(ctx)
	defer stopLife()
	stop := context.AfterFunc(life, func() { ln.Close() })
	// AfterFunc runs Close in its own goroutine; close here too so the port
	// is closed when ServeAgent returns, not a moment later.
	defer func() { stop(); ln.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	pause := 5 * time.Millisecond
	for {
		conn, err := ln.Accept()
		switch {
		case life.Err() != nil:
			if err == nil {
				conn.Close()
			}
			return nil
		case errors.Is(err, net.ErrClosed):
			return fmt.Errorf("healthz: agent: accept: %w", err)
		case err != nil: // such as too many open files: wait and retry, as net/http does
			pause = min(2*pause, time.Second)
			sleep(life, pause)
			continue
		}
		pause = 5 * time.Millisecond
		wg.Go(func() { h.answerAgent(life, conn) })
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// answerAgent writes the agent line, half-closes, and reads what the peer
// sent (HAProxy's agent-send string) until it closes, so that closing does
// not reset the connection before the peer has read the line.
func (h *Health) answerAgent(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(h.longest + time.Second))
	io.WriteString(conn, h.AgentStatus(ctx)+"\n")
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		io.Copy(io.Discard, io.LimitReader(conn, 4096))
	}
}

// AgentStatus is the line ServeAgent answers, without its newline.
func (h *Health) AgentStatus(ctx context.Context) string {
	rep := h.current(ctx).rep
	switch rep.Status {
	case StatusDraining:
		return "drain"
	case StatusDown:
		return "down#" + agentReason(rep)
	}
	if w, ok := h.weight(); ok {
		return "ready up " + strconv.Itoa(w) + "%"
	}
	return "ready up"
}

// weight is 100% with no request in flight, falling linearly to 1% at
// AgentMaxInFlight requests.
func (h *Health) weight() (int, bool) {
	if h.maxInFlight <= 0 {
		return 0, false
	}
	w := 100 - 100*h.InFlight()/h.maxInFlight
	return min(max(w, 1), 100), true
}

func agentReason(rep Report) string {
	var failed []string
	for _, name := range rep.order {
		if c := rep.Checks[name]; c.Status == CheckDown {
			failed = append(failed, name+": "+oneLine(c.Error))
		}
	}
	return strings.Join(failed, "; ")
}
