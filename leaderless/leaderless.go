// Package leaderless tells the errors a JetStream stream gives while it has
// no leader — for a few seconds after its leader's server dies, until the
// survivors elect another — from the errors that are answers. A request
// that failed with one of them can be made again; one that got an answer
// (even an error, such as a revision mismatch) must not be.
package leaderless

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Is reports whether err is what a request gets from a stream electing a
// leader: no answer in time (the request or its answer was lost with the
// server), no responders, JetStream's "no response from stream", or its
// 503 "JetStream system temporarily unavailable".
func Is(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		errors.As(err, &apiErr) && apiErr.Code == 503
}
