// Package settle tells the answers a JetStream cluster gives while it
// settles — right after it forms, while it elects a stream's leader,
// before its meta leader has heard from every server — from answers a
// later try would repeat, and retries an operation through the first
// kind.
//
// Creating a replicated stream or bucket at start-up meets all of them:
// requests that time out or find no responder while leaders are elected,
// "insufficient resources" (503) for about a second after the cluster
// forms, and "no suitable peers for placement, peer offline" (10005)
// until the meta leader has its peers' first statistics.
package settle

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/leaderless"
)

// errNoPeers is JetStream's "no suitable peers for placement".
const errNoPeers jetstream.ErrorCode = 10005

// Transient reports whether err is an answer a settling cluster gives and
// a later try may not: what a stream electing its leader gives
// (leaderless.Is) or a placement refused for a peer not heard from yet
// (NoPeerYet).
func Transient(err error) bool {
	return leaderless.Is(err) || NoPeerYet(err)
}

// NoPeerYet reports whether err is "no suitable peers for placement"
// because a peer is offline — as every peer is to a meta leader that has
// not had its first statistics yet. A placement the cluster can never
// make (more replicas than servers, tags nothing matches) gives the same
// code with other reasons, and is not reported.
func NoPeerYet(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errNoPeers &&
		strings.Contains(apiErr.Description, "peer offline")
}

// Retry runs op, each try with its own deadline of attempt, until it
// succeeds, fails with an error Transient does not accept, or ctx ends;
// then it returns op's last error. Tries are 250 ms apart.
func Retry(ctx context.Context, attempt time.Duration, op func(context.Context) error) error {
	for {
		actx, cancel := context.WithTimeout(ctx, attempt)
		err := op(actx)
		cancel()
		if err == nil || !Transient(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(250 * time.Millisecond):
		}
	}
}
