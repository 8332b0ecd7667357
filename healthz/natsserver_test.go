package healthz_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jetfleet/jetfleet/healthz"
	"github.com/jetfleet/jetfleet/internal/natsembed"
)

func TestNATSServerCheckPassesOnAHealthyServer(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Config{Listen: "127.0.0.1:-1", StoreDir: t.TempDir(), MonitorListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	c := healthz.NATSServer("nats.server", srv.MonitorURL(), nil)
	if err := c.Run(context.Background()); err != nil {
		t.Fatalf("healthy server: %v", err)
	}
	srv.Shutdown()
	if err := c.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "health not reachable") {
		t.Fatalf("stopped server: %v, want health not reachable", err)
	}
}
