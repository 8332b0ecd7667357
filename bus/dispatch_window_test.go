package bus_test

import (
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// TestDispatchManyLargerThanTheAsyncWindow: a batch larger than the
// JetStream context's limit of outstanding async publishes, over a link
// whose acknowledgements take longer than nats.go waits on a stalled publish
// (200 ms), is sent in a sliding window: every job is stored once and none
// is reported failed.
func TestDispatchManyLargerThanTheAsyncWindow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := natstest.Start(t)
	slow := slowLink(t, strings.TrimPrefix(srv.ClientURL(), "nats://"), 300*time.Millisecond)
	nc, err := nats.Connect("nats://"+slow, nats.Timeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(50))
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.Provision(ctx, js, bus.Config{}); err != nil {
		t.Fatal(err)
	}
	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dispatchManyStoresAll(t, js, d, 200)
}

// slowLink is a loopback TCP relay to addr that delivers the server's bytes
// to the client delay after the server sent them (a slow network, not a
// fake server). It returns the relay's address.
func slowLink(t *testing.T, addr string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", addr)
			if err != nil {
				client.Close()
				return
			}
			mu.Lock()
			conns = append(conns, client, server)
			mu.Unlock()
			go io.Copy(server, client)
			go delayedCopy(client, server, delay)
		}
	}()
	return ln.Addr().String()
}

// delayedCopy copies src to dst, each chunk delay after it was read.
func delayedCopy(dst io.Writer, src io.Reader, delay time.Duration) {
	type chunk struct {
		at   time.Time
		data []byte
	}
	chunks := make(chan chunk, 1024)
	go func() {
		defer close(chunks)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				chunks <- chunk{time.Now().Add(delay), buf[:n]}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range chunks {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.data); err != nil {
			return
		}
	}
}
