package bus

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// ConfigFromEnv reads the topology settings an operator may change from
// the environment, so that every process provisions what was asked for
// instead of resetting it at every start:
//
//	JETFLEET_FAILED_RETENTION  how long dead letters are kept (default 168h)
//	JETFLEET_FAILED_MAX_BYTES  the dead letters' size limit in bytes, -1 for none (default 268435456, 256 MiB)
//	JETFLEET_DUPLICATE_WINDOW  dedupe window of job IDs (default 2m)
//	JETFLEET_ACK_WAIT          redelivery wait of the queue consumers, at least 1s (default 30s)
//	JETFLEET_COMPLETED_RETENTION  how long the history keeps finished jobs (default 1h)
//	JETFLEET_HISTORY_MAX_BYTES    the history's size limit in bytes (default 268435456, 256 MiB)
//	JETFLEET_HISTORY           "off" turns the job history off (default on)
//
// Durations are Go durations ("90s", "2h") or whole seconds ("90"). Unset
// settings stay zero, which Config reads as their defaults.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var cfg Config
	if err := historyFromEnv(getenv, &cfg); err != nil {
		return Config{}, err
	}
	if v := strings.TrimSpace(getenv("JETFLEET_FAILED_MAX_BYTES")); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || (n <= 0 && n != -1) {
			return Config{}, fmt.Errorf("bus: JETFLEET_FAILED_MAX_BYTES=%q is not a positive number of bytes or -1 (no bound): %w", v, ErrInvalid)
		}
		cfg.FailedMaxBytes = n
	}
	for _, s := range []struct {
		key string
		dst *time.Duration
	}{
		{"JETFLEET_FAILED_RETENTION", &cfg.FailedRetention},
		{"JETFLEET_DUPLICATE_WINDOW", &cfg.DuplicateWindow},
		{"JETFLEET_ACK_WAIT", &cfg.AckWait},
		{"JETFLEET_COMPLETED_RETENTION", &cfg.CompletedRetention},
	} {
		v := getenv(s.key)
		if v == "" {
			continue
		}
		d, err := wire.ParseDuration(v)
		if err != nil || d < 0 {
			return Config{}, fmt.Errorf("bus: %s=%q is not a duration like 90s or 2h (or whole seconds): %w", s.key, v, ErrInvalid)
		}
		if s.key == "JETFLEET_ACK_WAIT" && d > 0 && d < time.Second {
			return Config{}, fmt.Errorf("bus: JETFLEET_ACK_WAIT=%q: want at least 1s (a worker's heartbeats come every third of it): %w", v, ErrInvalid)
		}
		*s.dst = d
	}
	return cfg, nil
}

// historyFromEnv reads JETFLEET_HISTORY and JETFLEET_HISTORY_MAX_BYTES.
func historyFromEnv(getenv func(string) string, cfg *Config) error {
	switch v := strings.ToLower(strings.TrimSpace(getenv("JETFLEET_HISTORY"))); v {
	case "", "on", "true", "1":
	case "off", "false", "0":
		cfg.NoHistory = true
	default:
		return fmt.Errorf("bus: JETFLEET_HISTORY=%q: want on or off: %w", v, ErrInvalid)
	}
	if v := strings.TrimSpace(getenv("JETFLEET_HISTORY_MAX_BYTES")); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return fmt.Errorf("bus: JETFLEET_HISTORY_MAX_BYTES=%q is not a positive number of bytes: %w", v, ErrInvalid)
		}
		cfg.HistoryMaxBytes = n
	}
	return nil
}
