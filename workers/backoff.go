package workers

import (
	"math/rand/v2"
	"time"
)

const maxDefaultBackoff = 10 * time.Minute

// retryDelay is the wait before the delivery after attempt (1-based; a
// lower number counts as 1).
func retryDelay(delays []time.Duration, attempt int) time.Duration {
	attempt = max(attempt, 1)
	if len(delays) > 0 {
		return delays[min(attempt, len(delays))-1]
	}
	base := maxDefaultBackoff
	if attempt <= 10 {
		base = min(time.Second<<(attempt-1), maxDefaultBackoff)
	}
	jitter := 0.75 + rand.Float64()/2
	return time.Duration(float64(base) * jitter)
}
