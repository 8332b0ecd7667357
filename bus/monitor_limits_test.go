package bus_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
)

func TestParseQueueLimits(t *testing.T) {
	t.Parallel()
	got, err := bus.ParseQueueLimits(" high:100, default ,,low:0", 1000, time.Minute)
	want := []bus.QueueLimit{
		{Queue: "high", Max: 100, MaxWait: time.Minute},
		{Queue: "default", Max: 1000, MaxWait: time.Minute},
		{Queue: "low", Max: 0, MaxWait: time.Minute},
	}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("ParseQueueLimits = %+v, %v; want %+v", got, err, want)
	}
	for spec, msg := range map[string]string{
		"":          "no queue to monitor",
		" , ":       "no queue to monitor",
		"high:x":    `queue "high": max "x" is not a whole number`,
		"high:-1":   `max "-1" is not a whole number`,
		"high:1.5":  `max "1.5" is not a whole number`,
		"Hi:3":      `queue name "Hi"`,
		"high,a.b":  `queue name "a.b"`,
		"high:2:3":  `max "2:3" is not a whole number`,
		":5":        "queue name is empty",
		"high:":     `max "" is not a whole number`,
		"high:1e3":  `max "1e3"`,
		"high:0x10": `max "0x10"`,
	} {
		if got, err := bus.ParseQueueLimits(spec, 10, 0); !errors.Is(err, bus.ErrInvalid) || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseQueueLimits(%q) = %+v, %v; want ErrInvalid containing %q", spec, got, err, msg)
		}
	}
}
