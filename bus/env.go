package bus

import (
	"fmt"
	"time"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// ConfigFromEnv reads the topology settings an operator may change from
// the environment, so that every process provisions what was asked for
// instead of resetting it at every start:
//
//	JETFLEET_FAILED_RETENTION  how long dead letters are kept (default 168h)
//	JETFLEET_DUPLICATE_WINDOW  dedupe window of job IDs (default 2m)
//	JETFLEET_ACK_WAIT          redelivery wait of the queue consumers (default 30s)
//
// Values are Go durations ("90s", "2h") or whole seconds ("90"). Unset
// settings stay zero, which Config reads as their defaults.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var cfg Config
	for _, s := range []struct {
		key string
		dst *time.Duration
	}{
		{"JETFLEET_FAILED_RETENTION", &cfg.FailedRetention},
		{"JETFLEET_DUPLICATE_WINDOW", &cfg.DuplicateWindow},
		{"JETFLEET_ACK_WAIT", &cfg.AckWait},
	} {
		v := getenv(s.key)
		if v == "" {
			continue
		}
		d, err := wire.ParseDuration(v)
		if err != nil || d < 0 {
			return Config{}, fmt.Errorf("bus: %s=%q is not a duration like 90s or 2h (or whole seconds): %w", s.key, v, ErrInvalid)
		}
		*s.dst = d
	}
	return cfg, nil
}
