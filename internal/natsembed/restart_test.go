package natsembed_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// Restart starts a new server in the process on the ports and with the
// name the first one bound (random ones included), with its streams;
// a client reconnects by itself. A Restart after Shutdown is an error.
func TestRestartKeepsPortsNameAndStreams(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Config{Listen: "127.0.0.1:-1", MonitorListen: "127.0.0.1:0", StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	url, monitor, name := srv.ClientURL(), srv.MonitorURL(), srv.Name()
	_, js := natstest.Connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s", []byte("before")); err != nil {
		t.Fatal(err)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if srv.ClientURL() != url || srv.MonitorURL() != monitor || srv.Name() != name {
		t.Errorf("after Restart: %s %s %s, want %s %s %s", srv.ClientURL(), srv.MonitorURL(), srv.Name(), url, monitor, name)
	}
	if err := srv.JetStreamReady(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	// The client reconnects; the stream and its message are there. A
	// publish written to the old connection before the client saw it close
	// is lost with it, so each try waits for its answer a short while.
	for {
		try, cancelTry := context.WithTimeout(ctx, 2*time.Second)
		ack, err := js.Publish(try, "s", []byte("after"), jetstream.WithMsgID("after"))
		cancelTry()
		if err == nil {
			if ack.Sequence != 2 {
				t.Errorf("publish after Restart: sequence %d, want 2", ack.Sequence)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no publish acknowledged after Restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv.Shutdown()
	if srv.Running() {
		t.Error("running after Shutdown")
	}
	if err := srv.Restart(); err == nil {
		t.Error("Restart after Shutdown succeeded")
	}
}
