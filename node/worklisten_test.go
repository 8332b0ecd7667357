package node

import (
	"fmt"
	"net"
	"testing"
)

// TestWorkListenersAreLoopbackUnlessTold: --metrics-listen, like
// --health-listen, takes a bare port or :port as loopback; the two share
// one listener when they name the same address in either form; a host
// given is kept.
func TestWorkListenersAreLoopbackUnlessTold(t *testing.T) {
	const port = "0" // any free port: the same address in every form
	for _, tc := range []struct {
		metrics, health string
		loopback        bool
		shared          bool
	}{
		{":" + port, "", true, false},
		{port, port, true, true},
		{":" + port, port, true, true},
		{"127.0.0.1:" + port, ":" + port, true, true},
		{"0.0.0.0:" + port, "", false, false},
	} {
		name := fmt.Sprintf("metrics %q health %q", tc.metrics, tc.health)
		f := workFlagValues{metricsListen: &tc.metrics, healthListen: &tc.health}
		var cfg WorkConfig
		if err := f.listen(&cfg); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		ip := cfg.MetricsListener.Addr().(*net.TCPAddr).IP
		if ip.IsLoopback() != tc.loopback {
			t.Errorf("%s: metrics listen on %s; want loopback %v", name, cfg.MetricsListener.Addr(), tc.loopback)
		}
		if shared := cfg.HealthListener != nil && cfg.HealthListener == cfg.MetricsListener; shared != tc.shared {
			t.Errorf("%s: probes share the metrics listener: %v, want %v", name, shared, tc.shared)
		}
		cfg.MetricsListener.Close()
	}
}
