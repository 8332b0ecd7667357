package readmodel

import (
	"context"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/bus"
)

// JobHeaders adds the causal token of ctx (Token) to a job's headers as
// bus.HeaderCausalToken, so that the job's handler reads the writes ctx's
// request made before dispatching it. Give it to
// bus.Config.HeadersFromContext (package node does): every job dispatched
// in a Sticky scope that wrote then carries the scope's token. It adds
// nothing when the token is "" (SQLite, MySQL, no write).
func JobHeaders(ctx context.Context, h nats.Header) {
	if tok := Token(ctx); tok != "" {
		set, err := parseGTIDSet(tok)
		if err == nil {
			mergeTokenHeader(h, set)
		}
	}
}

// JobContext returns the context a job's handler should read through: a
// Sticky scope (after the job writes, its reads go to the primary) whose
// reads see at least the writes covered by the causal token the job
// carries (bus.HeaderCausalToken): from a replica that has applied them,
// waiting up to Config.CausalWait, else from the primary, exactly as a web
// request with WithToken. Package node installs it as a worker middleware;
// after the handler, Token of this context covers the token the job came
// with and the handler's own writes.
func JobContext(ctx context.Context, h nats.Header) context.Context {
	return WithToken(Sticky(ctx), h.Get(bus.HeaderCausalToken))
}
