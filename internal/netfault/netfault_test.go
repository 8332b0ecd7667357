package netfault_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/internal/netfault"
)

// echoServer answers every line with the same line, until the test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

func proxy(t *testing.T) *netfault.Proxy {
	t.Helper()
	p, err := netfault.New(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

type client struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{c: c, r: bufio.NewReader(c)}
}

// roundTrip sends line and reads the answer, waiting at most wait.
func (c *client) roundTrip(line string, wait time.Duration) (string, error) {
	c.c.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(c.c, line+"\n"); err != nil {
		return "", err
	}
	s, err := c.r.ReadString('\n')
	return strings.TrimSuffix(s, "\n"), err
}

func TestForwardsUntilCutThenDiscardsAndHealCloses(t *testing.T) {
	p := proxy(t)
	c := dial(t, p.Addr())
	if got, err := c.roundTrip("hello", 5*time.Second); err != nil || got != "hello" {
		t.Fatalf("through the proxy: %q, %v; want the echo", got, err)
	}
	p.Cut()
	// A black hole: the write succeeds, no answer ever comes, the
	// connection is not reset.
	if got, err := c.roundTrip("lost", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("through a cut link: %q, %v; want a timeout (no answer, no reset)", got, err)
	}
	during := dial(t, p.Addr()) // accepted into the hole
	if got, err := during.roundTrip("lost too", 300*time.Millisecond); !isTimeout(err) {
		t.Fatalf("new connection through a cut link: %q, %v; want a timeout", got, err)
	}
	p.Heal()
	for _, old := range []*client{c, during} {
		if _, err := old.roundTrip("after", 5*time.Second); err == nil || isTimeout(err) {
			t.Errorf("a connection that lived through the cut: %v; want it closed at heal", err)
		}
	}
	fresh := dial(t, p.Addr())
	if got, err := fresh.roundTrip("again", 5*time.Second); err != nil || got != "again" {
		t.Fatalf("after heal: %q, %v; want the echo", got, err)
	}
}

func TestLossyEndsConnectionsAndResetClosesThem(t *testing.T) {
	p := proxy(t)
	p.Lossy(1)
	c := dial(t, p.Addr())
	if _, err := c.roundTrip("x", 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("through a link that loses everything: %v; want the connection closed", err)
	}
	p.Lossy(0)
	c = dial(t, p.Addr())
	if got, err := c.roundTrip("y", 5*time.Second); err != nil || got != "y" {
		t.Fatalf("loss off: %q, %v", got, err)
	}
	p.Reset()
	if _, err := c.roundTrip("z", 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("after Reset: %v; want the connection closed", err)
	}
}

func TestSlowKeepsOrder(t *testing.T) {
	p := proxy(t)
	p.Slow(5 * time.Millisecond)
	c := dial(t, p.Addr())
	for _, w := range []string{"a", "b", "c"} {
		if got, err := c.roundTrip(w, 5*time.Second); err != nil || got != w {
			t.Fatalf("slow link: %q, %v; want %q", got, err, w)
		}
	}
}

func TestSinkClosesEveryConnection(t *testing.T) {
	s, err := netfault.NewSink()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := dial(t, s.Addr())
	if _, err := c.roundTrip("x", 5*time.Second); err == nil || isTimeout(err) {
		t.Fatalf("sink: %v; want the connection closed", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
