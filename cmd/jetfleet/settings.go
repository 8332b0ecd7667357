package main

import (
	"fmt"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/config"
)

// busSettings reads the topology settings an operator may change from the
// environment, so that `jetfleet up` provisions what was asked for instead
// of resetting it at every start:
//
//	JETFLEET_FAILED_RETENTION  how long dead letters are kept (default 168h)
//	JETFLEET_DUPLICATE_WINDOW  dedupe window of job IDs (default 2m)
//	JETFLEET_ACK_WAIT          redelivery wait of the queue consumers (default 30s)
func busSettings(getenv config.Getenv) (bus.Config, error) {
	var cfg bus.Config
	var err error
	if cfg.FailedRetention, err = config.Duration(getenv, "JETFLEET_FAILED_RETENTION", 0); err != nil {
		return cfg, err
	}
	if cfg.DuplicateWindow, err = config.Duration(getenv, "JETFLEET_DUPLICATE_WINDOW", 0); err != nil {
		return cfg, err
	}
	if cfg.AckWait, err = config.Duration(getenv, "JETFLEET_ACK_WAIT", 0); err != nil {
		return cfg, err
	}
	if cfg.FailedRetention < 0 || cfg.DuplicateWindow < 0 || cfg.AckWait < 0 {
		return cfg, fmt.Errorf("JETFLEET_FAILED_RETENTION, JETFLEET_DUPLICATE_WINDOW and JETFLEET_ACK_WAIT must not be negative")
	}
	return cfg, nil
}
