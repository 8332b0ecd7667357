package bus

// Reading the delayed jobs in JOBS by stream sequence, in batches of
// direct gets (nats-server 2.11+), for a reader that keeps a cursor and
// so reads each delayed job once: package metrics' count of the delayed
// jobs that come due soon. Nothing here creates a consumer: JOBS is a work
// queue, where a consumer would take the jobs it reads.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// DelayedJob is a delayed job waiting in JobsStream for its time.
type DelayedJob struct {
	// Seq is its sequence in JobsStream.
	Seq uint64
	// Queue is the queue it goes to; Token the last token of its subject
	// (its ID, or the ID's h- token).
	Queue, Token string
	// ReadyAt is when the server's scheduler publishes it to its queue.
	ReadyAt time.Time
}

// delayedBatch is how many delayed jobs one direct get batch returns.
const delayedBatch = 500

// ScanDelayed reads the delayed jobs stored at stream sequence from or
// later, at most limit of them, oldest first, and calls fn with each; it
// returns the sequence to continue from next time. A reader that keeps
// that cursor reads every delayed job once, however many wait: the first
// call reads what is there (in batches of direct gets, one request per
// 500 jobs), later ones only what was delayed since. Jobs the scheduler
// has already published are gone from JOBS and not read.
func (in *Inspector) ScanDelayed(ctx context.Context, from uint64, limit int, fn func(DelayedJob)) (next uint64, err error) {
	next = max(from, 1)
	for read := 0; read < limit; {
		req := directGetRequest{Seq: next, NextFor: SchedulePrefix + ".delay.>", Batch: min(delayedBatch, limit-read)}
		n, last, err := directBatch(ctx, in, req, func(m *nats.Msg) {
			if dj, ok := delayedFromMsg(m); ok {
				fn(dj)
			}
		})
		if err != nil {
			return next, err
		}
		if n == 0 {
			return next, nil
		}
		read, next = read+n, last+1
	}
	return next, nil
}

// delayedFromMsg reads a delayed job from a direct get's reply.
func delayedFromMsg(m *nats.Msg) (DelayedJob, bool) {
	seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
	if err != nil {
		return DelayedJob{}, false
	}
	parts := strings.SplitN(m.Header.Get("Nats-Subject"), ".", 4) // schedules.delay.<queue>.<id>
	at, ok := strings.CutPrefix(m.Header.Get(headerSchedule), "@at ")
	if len(parts) != 4 || !ok {
		return DelayedJob{Seq: seq}, false
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return DelayedJob{Seq: seq}, false
	}
	return DelayedJob{Seq: seq, Queue: parts[2], Token: parts[3], ReadyAt: t}, true
}

// directBatch sends one batch direct get and calls fn with each message
// until the server's end of batch; it returns how many messages came and
// the sequence of the last. A 404 (nothing at or after req.Seq) is an
// empty batch.
func directBatch(ctx context.Context, in *Inspector, req directGetRequest, fn func(*nats.Msg)) (n int, last uint64, err error) {
	body, err := json.Marshal(req)
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	nc := in.js.Conn()
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return 0, 0, fmt.Errorf("bus: direct get batch on %s: %w", JobsStream, err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(wire.APIPrefix(in.js)+"DIRECT.GET."+JobsStream, inbox, body); err != nil {
		return 0, 0, fmt.Errorf("bus: direct get batch on %s: %w", JobsStream, err)
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return n, last, fmt.Errorf("bus: direct get batch on %s: %w", JobsStream, err)
		}
		if status := m.Header.Get("Status"); len(m.Data) == 0 && status != "" {
			switch status {
			case "204", "404":
				return n, last, nil
			}
			return n, last, fmt.Errorf("bus: direct get batch on %s: status %s %s", JobsStream, status, m.Header.Get("Description"))
		}
		seq, err := strconv.ParseUint(m.Header.Get("Nats-Sequence"), 10, 64)
		if err != nil {
			return n, last, errors.New("bus: direct get batch: a reply without Nats-Sequence")
		}
		n, last = n+1, seq
		fn(m)
	}
}
