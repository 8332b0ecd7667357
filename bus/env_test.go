package bus_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
)

func TestConfigFromEnv(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cfg, err := bus.ConfigFromEnv(env(map[string]string{
		"JETFLEET_FAILED_RETENTION": "48h", "JETFLEET_DUPLICATE_WINDOW": "90", "JETFLEET_ACK_WAIT": "1m30s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.FailedRetention != 48*time.Hour || cfg.DuplicateWindow != 90*time.Second || cfg.AckWait != 90*time.Second {
		t.Errorf("got retention %s, window %s, ack wait %s; want 48h, 1m30s, 1m30s", cfg.FailedRetention, cfg.DuplicateWindow, cfg.AckWait)
	}
	if cfg, err := bus.ConfigFromEnv(env(nil)); err != nil || cfg.FailedRetention != 0 || cfg.AckWait != 0 {
		t.Errorf("unset settings: %+v, %v; want zero values (the defaults)", cfg, err)
	}
	for _, bad := range []string{"soon", "-5s", "500ms"} {
		_, err := bus.ConfigFromEnv(env(map[string]string{"JETFLEET_ACK_WAIT": bad}))
		if !errors.Is(err, bus.ErrInvalid) {
			t.Errorf("JETFLEET_ACK_WAIT=%q: err %v, want one wrapping ErrInvalid", bad, err)
		}
	}
}

func TestFailedMaxBytesFromEnv(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "JETFLEET_FAILED_MAX_BYTES" {
				return v
			}
			return ""
		}
	}
	for v, want := range map[string]int64{"": 0, "1048576": 1 << 20, "-1": -1} {
		cfg, err := bus.ConfigFromEnv(env(v))
		if err != nil || cfg.FailedMaxBytes != want {
			t.Errorf("JETFLEET_FAILED_MAX_BYTES=%q: %d, %v; want %d", v, cfg.FailedMaxBytes, err, want)
		}
	}
	for _, bad := range []string{"0", "-2", "1GB", "lots"} {
		_, err := bus.ConfigFromEnv(env(bad))
		if !errors.Is(err, bus.ErrInvalid) || !strings.Contains(err.Error(), "JETFLEET_FAILED_MAX_BYTES") {
			t.Errorf("JETFLEET_FAILED_MAX_BYTES=%q: err %v, want one naming the setting and wrapping ErrInvalid", bad, err)
		}
	}
}
