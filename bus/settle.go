package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// settleTime bounds how long provisioning retries the answers a JetStream
// cluster gives while it settles: "insufficient resources" (503) for about
// a second after a stream is created or scaled or the cluster forms, and
// races with other processes provisioning the same thing.
const settleTime = 30 * time.Second

// errRetry marks a concurrent change by another process: try again.
var errRetry = errors.New("bus: concurrent change, retry")

func retryable(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, errRetry) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.As(err, &apiErr) && apiErr.Code == 503
}

// untilSettled runs op until it succeeds, fails with an error retryable
// does not accept, ctx ends, or settleTime passes.
func untilSettled(ctx context.Context, op func() error) error {
	deadline := time.Now().Add(settleTime)
	wait := 50 * time.Millisecond
	for {
		err := op()
		if err == nil || !retryable(err) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}
