package main

import (
	"context"
	"fmt"
	"net"

	"github.com/jetfleet/jetfleet/examples/catalog/catalog"
	"github.com/jetfleet/jetfleet/node"
	"github.com/jetfleet/jetfleet/workers"
)

// The parts of `jetfleet up` above the job bus: the catalog demo as a node
// (its read model, migrated, and its image bucket), its web node and its
// workers — package node's, exactly as the catalog's own binary runs them.

// startNode opens the catalog on the system's NATS connection and applies
// its schema (safe from several processes at once; nothing to do when the
// schema is up to date).
func (s *system) startNode(ctx context.Context) error {
	cfg := s.a.nodeConfig()
	cfg.DataDir, cfg.Conn, cfg.Replicas, cfg.Migrate = s.opts.dataDir, s.nc, s.opts.replicas, true
	n, err := node.Open(ctx, catalog.App(catalog.Config{}), cfg)
	if err != nil {
		return err
	}
	s.node = n
	s.onStop("node", n.Close)
	return nil
}

// startHTTP serves the catalog, /up, /metrics and the dashboard (open
// without credentials on a loopback-only address unless some are set)
// until ctx ends, then drains.
// When the default address is taken it listens on a free port instead, and
// says so.
func (s *system) startHTTP(ctx context.Context) error {
	ln, fellBack, err := listenHTTP(s.opts.httpListen, s.opts.httpListenSet)
	if err != nil {
		return err
	}
	s.httpURL = node.HTTPURL(ln.Addr())
	if fellBack {
		s.log.Warn().Str("wanted", s.opts.httpListen).Str("http_url", s.httpURL).
			Msgf("%s is taken; the web node listens on a free port instead", s.opts.httpListen)
		fmt.Fprintf(s.a.stderr, "jetfleet: WARNING: %s is taken, so the web node listens on %s instead (pass --listen to choose).\n", s.opts.httpListen, s.httpURL)
	}
	delay := s.opts.drainDelay
	if delay == 0 {
		delay = -1 // none: there is no balancer in front of up
	}
	limits, err := node.HTTPLimitsFromEnv(s.a.getenv)
	if err != nil {
		ln.Close()
		return err
	}
	// Up is announced once the web node accepted its settings (sessions,
	// dashboard): a refused one stops up before it says it is running.
	serving, refused := make(chan struct{}), make(chan error, 1)
	cfg := node.ServeConfig{Listener: ln, DrainDelay: delay, Grace: s.opts.grace, OpenDashboard: true, HTTPLimits: limits,
		Serving: func() { close(serving) }}
	s.background(ctx, "http", func(ctx context.Context) error {
		err := s.node.Serve(ctx, cfg)
		refused <- err
		return err
	})
	select {
	case <-serving:
		return nil
	case err := <-refused:
		return err
	}
}

// startWorkers runs one worker for every queue of --queues, in that
// priority order, with the diagnostic kinds and the catalog's jobs.
func (s *system) startWorkers(ctx context.Context) error {
	if s.opts.noWorkers {
		return nil
	}
	cfg := node.WorkConfig{Worker: workers.Config{Queues: s.opts.queues, Grace: s.opts.grace}}
	s.background(ctx, "workers", func(ctx context.Context) error { return s.node.Work(ctx, cfg) })
	return nil
}

// background runs a part until ctx ends; a part that fails stops the
// system, and stopping the system waits for the part.
func (s *system) background(ctx context.Context, name string, run func(context.Context) error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := run(ctx); err != nil {
			s.fail(fmt.Errorf("%s: %w", name, err))
		}
	}()
	s.onStop(name, func() { <-done })
}

// defaultHTTPListen is the HTTP address of `up` when the user names none:
// loopback, so that the open dashboard and the demo's password-less login
// are not offered to the network. JETFLEET_HTTP_DEFAULT_LISTEN replaces
// it; it stays a default: `up` falls back to a free port when it is taken.
const defaultHTTPListen = "127.0.0.1:8080"

// listenHTTP listens on addr. When the user did not choose addr (explicit
// false) and it is taken, it listens on a free port of the same host
// instead and fellBack says so.
func listenHTTP(addr string, explicit bool) (ln net.Listener, fellBack bool, err error) {
	ln, err = net.Listen("tcp", addr)
	if err == nil {
		return ln, false, nil
	}
	if explicit {
		return nil, false, fmt.Errorf("cannot listen for HTTP on %s (--listen): %w; choose another address with --listen, or stop the process holding it", addr, err)
	}
	host, _, splitErr := net.SplitHostPort(addr)
	if splitErr != nil {
		return nil, false, fmt.Errorf("--listen %q: %w", addr, splitErr)
	}
	ln, err2 := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err2 != nil {
		return nil, false, fmt.Errorf("cannot listen for HTTP on %s (%w), nor on a free port (%w)", addr, err, err2)
	}
	return ln, true, nil
}
