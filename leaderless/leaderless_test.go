package leaderless_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/leaderless"
)

func TestIsTellsElectionsFromAnswers(t *testing.T) {
	for err, want := range map[error]bool{
		context.DeadlineExceeded:                            true,
		fmt.Errorf("load: %w", nats.ErrTimeout):             true,
		nats.ErrNoResponders:                                true,
		jetstream.ErrNoStreamResponse:                       true,
		&jetstream.APIError{Code: 503, Description: "busy"}: true,
		context.Canceled:                                    false,
		jetstream.ErrKeyRevisionMismatch:                    false,
		jetstream.ErrKeyNotFound:                            false,
		&jetstream.APIError{Code: 400, Description: "bad"}:  false,
		nats.ErrMaxPayload:                                  false,
	} {
		if got := leaderless.Is(err); got != want {
			t.Errorf("Is(%v) = %v, want %v", err, got, want)
		}
	}
}

// A request that got no answer while the stream elected a leader can be
// made again; an answer cannot.
func ExampleIs() {
	fmt.Println(leaderless.Is(jetstream.ErrNoStreamResponse))
	fmt.Println(leaderless.Is(jetstream.ErrKeyRevisionMismatch))
	// Output:
	// true
	// false
}
