package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// This file holds the few JetStream API calls that nats.go does not wrap:
// a direct get by start time, a direct get batch used for its
// Nats-Num-Pending header (a count of the messages on a subject filter
// without listing the subjects), and a purge that reports how many
// messages it removed. All are part of the server's public API (2.11+).

// directGetRequest is the body of $JS.API.DIRECT.GET.<stream>.
type directGetRequest struct {
	Seq       uint64     `json:"seq,omitempty"`
	LastFor   string     `json:"last_by_subj,omitempty"`
	NextFor   string     `json:"next_by_subj,omitempty"`
	Batch     int        `json:"batch,omitempty"`
	StartTime *time.Time `json:"start_time,omitempty"`
	NoHeaders bool       `json:"no_hdr,omitempty"`
}

// directGet sends one direct get and returns the first reply. A 404 reply
// is jetstream.ErrMsgNotFound.
func directGet(ctx context.Context, js jetstream.JetStream, stream string, req directGetRequest) (*nats.Msg, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	msg, err := js.Conn().RequestWithContext(ctx, wire.APIPrefix(js)+"DIRECT.GET."+stream, body)
	if err != nil {
		return nil, fmt.Errorf("bus: direct get on %s: %w", stream, err)
	}
	if len(msg.Data) == 0 && msg.Header.Get("Status") != "" {
		if msg.Header.Get("Status") == "404" {
			return nil, jetstream.ErrMsgNotFound
		}
		return nil, fmt.Errorf("bus: direct get on %s: status %s %s", stream, msg.Header.Get("Status"), msg.Header.Get("Description"))
	}
	return msg, nil
}

// noRespondersWait is how long askAgain asks again while a stream's
// direct gets have no responders.
const noRespondersWait = 3 * time.Second

// directGetExisting is directGet on a stream known to exist (JOBS, DLQ:
// provisioned with the queues), asking again while no server answers
// (askAgain).
func directGetExisting(ctx context.Context, js jetstream.JetStream, stream string, req directGetRequest) (*nats.Msg, error) {
	var msg *nats.Msg
	err := askAgain(ctx, func() (bool, error) {
		var err error
		msg, err = directGet(ctx, js, stream, req)
		return errors.Is(err, nats.ErrNoResponders), err
	})
	return msg, err
}

// askAgain calls try until it answers, backing off, while try reports that
// no server answered, for up to noRespondersWait; it returns try's last
// error. On a stream that exists "no responders" is a moment of the
// cluster, not an answer: a stream's leader serves direct gets from its
// election on, but its followers only once they have caught up
// (nats-server checks every 2 s), and a leader that steps down stops
// serving them; for a stream just created, or whose leader just changed,
// no server may answer for a moment.
func askAgain(ctx context.Context, try func() (noResponders bool, err error)) error {
	giveUp := time.Now().Add(noRespondersWait)
	wait := 25 * time.Millisecond
	for {
		noResponders, err := try()
		if !noResponders || time.Now().Add(wait).After(giveUp) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, 400*time.Millisecond)
	}
}

func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, 10*time.Second)
}

// countSubject counts the messages of stream on subject filter (wildcards
// allowed) with one request: the first reply of a batch direct get carries
// Nats-Num-Pending, the number of matching messages after it. The server
// computes it from its subject index; no subject list is sent back.
func countSubject(ctx context.Context, js jetstream.JetStream, stream, filter string) (uint64, error) {
	msg, err := directGetExisting(ctx, js, stream, directGetRequest{NextFor: filter, Batch: 1, NoHeaders: false})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(msg.Header.Get("Nats-Num-Pending"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bus: count %s on %s: the server did not send Nats-Num-Pending (nats-server 2.11 or later is needed)", filter, stream)
	}
	return n + 1, nil
}

// seqAtTime is the sequence of stream's first message stored at or after
// t, or 0 when there is none.
func seqAtTime(ctx context.Context, js jetstream.JetStream, stream string, t time.Time) (uint64, error) {
	t = t.UTC()
	msg, err := directGetExisting(ctx, js, stream, directGetRequest{StartTime: &t})
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	seq, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bus: direct get on %s: reply has no sequence header", stream)
	}
	return seq, nil
}

// purgeRequest is the body of $JS.API.STREAM.PURGE.<stream>.
type purgeRequest struct {
	Filter string `json:"filter,omitempty"`
	Seq    uint64 `json:"seq,omitempty"`
}

// purge removes stream's messages on filter below seq (all when seq is 0)
// and returns how many it removed.
func purge(ctx context.Context, js jetstream.JetStream, stream string, req purgeRequest) (uint64, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return 0, err
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	msg, err := js.Conn().RequestWithContext(ctx, wire.APIPrefix(js)+"STREAM.PURGE."+stream, body)
	if err != nil {
		return 0, fmt.Errorf("bus: purge %s: %w", stream, err)
	}
	var resp struct {
		Success bool   `json:"success"`
		Purged  uint64 `json:"purged"`
		Error   *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, fmt.Errorf("bus: purge %s: bad reply: %w", stream, err)
	}
	if resp.Error != nil || !resp.Success {
		desc := "no success"
		if resp.Error != nil {
			desc = resp.Error.Description
		}
		return 0, fmt.Errorf("bus: purge %s: %s", stream, desc)
	}
	return resp.Purged, nil
}
