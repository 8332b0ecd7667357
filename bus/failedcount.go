package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// FailedSince counts the dead letters in DLQ stored at or after since, of
// every queue (the dashboard's "failed in the last hour"). It costs two
// requests however many dead letters there are: one finds the first
// sequence at or after since, the other counts the messages from there
// with the server's subject index. Retried and forgotten jobs have left
// DLQ, so they are not counted.
func (in *Inspector) FailedSince(ctx context.Context, since time.Time) (uint64, error) {
	seq, err := seqAtTime(ctx, in.js, DLQStream, since)
	if err != nil || seq == 0 {
		return 0, err
	}
	msg, err := directGetExisting(ctx, in.js, DLQStream, directGetRequest{Seq: seq, NextFor: DLQPrefix + ".>", Batch: 1})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(msg.Header.Get("Nats-Num-Pending"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bus: count %s since %s: the server did not send Nats-Num-Pending (nats-server 2.11 or later is needed)", DLQStream, since.Format(time.RFC3339))
	}
	return n + 1, nil
}
