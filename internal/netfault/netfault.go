// Package netfault is a fault-injecting TCP proxy for tests: each Proxy
// listens on a loopback port and forwards every connection to one target,
// and the test can cut the link, heal it, slow it down or make it drop
// connections at random. Put one Proxy on every link of a topology (each
// route between two NATS servers, each client's link to its server) and a
// test can partition any set of links while the processes stay alive.
//
// A cut is a black hole, as a dropped cable or a firewall's DROP rule is:
// connections stay open, their bytes are read and thrown away, and new
// connections are accepted into the same hole, so the peers learn of the cut
// only from their own timeouts (pings, heartbeats), never from a reset. Heal
// closes every connection that lived through the cut (a TCP connection that
// lost bytes cannot carry on: the peers reconnect, as they would once their
// TCP timers fire) and forwards new ones again.
//
// Everything stays on loopback; nothing here needs privileges.
package netfault

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Proxy forwards connections from its loopback address to a target address.
// Its methods are safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	cut    bool
	delay  time.Duration
	loss   float64
	conns  map[*link]struct{}
	closed bool
	wg     sync.WaitGroup
}

// link is one proxied connection: the accepted side and the dialled side.
type link struct {
	in, out net.Conn
	// holed: the link lived through a cut; it forwards nothing more and is
	// closed at Heal.
	holed bool
}

// New starts a proxy on a free loopback port forwarding to target
// (host:port).
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("netfault: listen: %w", err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's address, host:port on loopback.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address the proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Cut makes the link a black hole: bytes already in flight and every byte
// after are discarded, open connections stay open, new ones are accepted
// and discarded too. Cutting a cut link does nothing.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for l := range p.conns {
		l.holed = true
	}
}

// Heal ends a cut: the connections that lived through it are closed (their
// peers reconnect) and new connections are forwarded again. The delay and
// the loss set by Slow and Lossy stay.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
	for l := range p.conns {
		if l.holed {
			l.close()
			delete(p.conns, l)
		}
	}
}

// IsCut reports whether the link is cut.
func (p *Proxy) IsCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// Slow delays every chunk of bytes forwarded, in both directions, by d
// (0: no delay). Order is kept: a slow link is a long one, not a
// reordering one.
func (p *Proxy) Slow(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay = d
}

// Lossy makes every chunk of bytes forwarded end its connection with
// probability prob (0: never), as a link that loses packets until TCP gives
// up does; the peers see a reset and reconnect.
func (p *Proxy) Lossy(prob float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.loss = prob
}

// Reset closes every open connection now (the peers reconnect) without
// cutting the link.
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.conns {
		l.close()
		delete(p.conns, l)
	}
}

// Close stops the proxy and closes every connection it holds.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for l := range p.conns {
		l.close()
		delete(p.conns, l)
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.wg.Add(1)
		go p.serve(in)
	}
}

// serve dials the target for one accepted connection and copies both ways.
func (p *Proxy) serve(in net.Conn) {
	defer p.wg.Done()
	out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		in.Close()
		return
	}
	l := &link{in: in, out: out}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.close()
		return
	}
	l.holed = p.cut
	p.conns[l] = struct{}{}
	p.mu.Unlock()
	var done sync.WaitGroup
	done.Add(2)
	go func() { defer done.Done(); p.copy(l, out, in) }()
	go func() { defer done.Done(); p.copy(l, in, out) }()
	done.Wait()
	p.mu.Lock()
	delete(p.conns, l)
	p.mu.Unlock()
}

// copy forwards src to dst chunk by chunk under the link's current faults,
// until either side fails; then it closes both.
func (p *Proxy) copy(l *link, dst, src net.Conn) {
	defer l.close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			holed, delay, drop := p.faults(l)
			if drop {
				return
			}
			if delay > 0 {
				time.Sleep(delay)
			}
			if !holed {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return // EOF or closed: the link ends both ways
		}
	}
}

// faults is what applies to the next chunk of l: discard it (cut), delay
// it, or end the connection (loss).
func (p *Proxy) faults(l *link) (holed bool, delay time.Duration, drop bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return l.holed, p.delay, p.loss > 0 && rand.Float64() < p.loss
}

func (l *link) close() {
	l.in.Close()
	l.out.Close()
}

// Sink is a loopback address that accepts connections and closes them at
// once: an address to advertise where a peer must never connect directly
// (a NATS server's cluster advertise, so that gossip cannot route around
// the proxies). Close it when done.
type Sink struct {
	ln net.Listener
	wg sync.WaitGroup
}

// NewSink starts a Sink on a free loopback port.
func NewSink() (*Sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("netfault: listen: %w", err)
	}
	s := &Sink{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return s, nil
}

// Addr is the sink's address, host:port on loopback.
func (s *Sink) Addr() string { return s.ln.Addr().String() }

// Close stops the sink.
func (s *Sink) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	return err
}
