package catalog_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/examples/catalog/catalog"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// A request whose NATS server went away answers 503 (retry), not 500: the
// errors are the ones nats.go returns for a real server that stopped.
func TestNATSOutOfReachIsRetryable(t *testing.T) {
	t.Run("no reconnect buffer", func(t *testing.T) { checkNATSOutOfReach(t, nats.ReconnectBufSize(-1)) })
	t.Run("default reconnect buffer", func(t *testing.T) { checkNATSOutOfReach(t) })
}

func checkNATSOutOfReach(t *testing.T, opts ...nats.Option) {
	srv := natstest.Start(t)
	nc, js := natstest.Connect(t, srv.ClientURL(), opts...)
	ctx := context.Background()
	obj, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "images"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	for nc.IsConnected() {
		time.Sleep(10 * time.Millisecond)
	}
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, putErr := obj.PutBytes(short, "a.png", []byte("png"))
	_, pubErr := js.Publish(short, "jobs.high.x", []byte("{}"))
	nc.Close()
	_, closedErr := js.Publish(ctx, "jobs.high.x", []byte("{}"))
	for name, err := range map[string]error{"object put": putErr, "publish": pubErr, "publish on a closed connection": closedErr} {
		if err == nil {
			t.Fatalf("%s succeeded without a server", name)
		}
		if wrapped := fmt.Errorf("store x in the object store: %w", err); !catalog.NATSUnavailable(wrapped) {
			t.Errorf("%s: %v is not taken as NATS out of reach", name, wrapped)
		}
	}
	if catalog.NATSUnavailable(errors.New("image is not a PNG")) {
		t.Error("an ordinary error is taken as NATS out of reach")
	}
}
