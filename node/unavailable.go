package node

import (
	"context"
	"errors"
	"net/http"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/sessions"
)

// Unavailable reports whether err says NATS or JetStream could not be
// reached or did not answer: a disconnected or closed connection, a full
// reconnect buffer, a timeout, no responders, a JetStream 503, the session
// store out of reach. A retry may succeed, so a handler answers such an
// error with 503 and Retry-After, never 500: a client or a balancer then
// sends the request again (with the same Idempotency-Key).
func Unavailable(err error) bool {
	for _, e := range []error{nats.ErrDisconnected, nats.ErrConnectionClosed, nats.ErrConnectionReconnecting,
		nats.ErrConnectionDraining, nats.ErrReconnectBufExceeded, nats.ErrTimeout, nats.ErrNoResponders, jetstream.ErrNoStreamResponse,
		jetstream.ErrConnectionClosed, jetstream.ErrServerShutdown, context.DeadlineExceeded, sessions.ErrUnavailable} {
		if errors.Is(err, e) {
			return true
		}
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.Code == http.StatusServiceUnavailable
}
