package settle_test

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/internal/settle"
)

// A start-up step is tried again while the cluster settles, and given up
// at the first real answer.
func ExampleRetry() {
	tries := 0
	err := settle.Retry(context.Background(), 2*time.Second, func(ctx context.Context) error {
		if tries++; tries < 3 {
			return nats.ErrNoResponders // a server whose JetStream is not up yet
		}
		return nil
	})
	fmt.Println(tries, "tries, error:", err)
	// Output: 3 tries, error: <nil>
}
