package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus/internal/wire"
)

// Tags tags the job ("user:7", "order:42"), as Laravel Horizon's tags do:
// `jetfleet queue jobs --tag user:7` and Inspector.Jobs list the recent
// jobs of a tag, newest first, and Inspector.CancelTag cancels them. A job
// carries at most MaxTags tags of 1 to MaxTagLen bytes of printable ASCII
// without spaces, '.', '*', '>' or ','; duplicates are dropped. They
// travel in the Jetfleet-Tags header, and the Dispatcher writes one index
// entry per tag to HistoryStream (jetfleet.tags.<tag>.<id>) once the job
// is stored, kept as long as the history keeps records
// (Config.CompletedRetention).
func Tags(tags ...string) Option { return func(o *options) { o.tags = append(o.tags, tags...) } }

func (o *options) validateTags() error {
	if len(o.tags) == 0 {
		return nil
	}
	tags, err := wire.ValidateTags(o.tags)
	o.tags = tags
	return err
}

func (o *options) setTags(h nats.Header) {
	if len(o.tags) > 0 {
		h.Set(HeaderTags, strings.Join(o.tags, ","))
	}
}

// tagEntry is the body of a tag index entry.
type tagEntry struct {
	ID    string    `json:"id"`
	Queue string    `json:"queue"`
	Kind  string    `json:"kind"`
	At    time.Time `json:"at"`
}

// tagMsgs are the index entries of the tags of the stored job msg; none
// when it has no tag or the history is off.
func (d *Dispatcher) tagMsgs(msg *nats.Msg) []*nats.Msg {
	tags := ParseTags(msg.Header)
	if len(tags) == 0 || d.cfg.NoHistory {
		return nil
	}
	subject := msg.Subject
	if target := msg.Header.Get(headerScheduleTarget); target != "" {
		subject = target
	}
	queue, kind, _ := wire.ParseJobSubject(subject)
	id := msg.Header.Get(HeaderJobID)
	if id == "" {
		id = msg.Header.Get(HeaderMsgID)
	}
	e := tagEntry{ID: id, Queue: queue, Kind: kind, At: time.Now().UTC()}
	body := fmt.Appendf(nil, `{"id":%s,"queue":%q,"kind":%q,"at":%q}`, appendString(nil, e.ID), e.Queue, e.Kind, e.At.Format(time.RFC3339Nano))
	out := make([]*nats.Msg, len(tags))
	for i, tag := range tags {
		out[i] = &nats.Msg{Subject: wire.TagSubject(tag, id), Data: body,
			Header: nats.Header{HeaderMsgID: []string{id + ":tag:" + tag}}}
	}
	return out
}

// indexTags writes the tag index entries of the stored job msg and waits
// for their acknowledgements. An entry not acknowledged makes the
// dispatch an ErrNotAcknowledged error, as for the job itself:
// dispatching again with the same ID stores nothing twice.
func (d *Dispatcher) indexTags(ctx context.Context, msg *nats.Msg) error {
	entries := d.tagMsgs(msg)
	if len(entries) == 0 {
		return nil
	}
	futures := make([]jetstream.PubAckFuture, len(entries))
	var errs []error
	for i, e := range entries {
		var err error
		if futures[i], err = d.js.PublishMsgAsync(e); err != nil {
			errs = append(errs, d.tagError(e, err))
		}
	}
	for _, f := range futures {
		if f != nil {
			if err := d.awaitAck(ctx, f); err != nil {
				errs = append(errs, d.tagError(f.Msg(), err))
			}
		}
	}
	return errors.Join(errs...)
}

func (d *Dispatcher) tagError(e *nats.Msg, err error) error {
	if errors.Is(err, ErrNotAcknowledged) {
		return fmt.Errorf("the job is stored but its tag entry %s is not (is %s provisioned? run `jetfleet up` or call bus.Provision): %w", e.Subject, HistoryStream, err)
	}
	return fmt.Errorf("%w: the job is stored but its tag entry %s is not: %w", ErrNotAcknowledged, e.Subject, err)
}

// indexTagsOfBatch indexes the tags of the stored jobs of a DispatchMany
// batch, with asynchronous publishes in a window as the jobs themselves;
// a job whose entries are not acknowledged gets the error in errs.
func (d *Dispatcher) indexTagsOfBatch(ctx context.Context, futures []jetstream.PubAckFuture, errs []error) {
	type pending struct {
		job int
		f   jetstream.PubAckFuture
	}
	var ps []pending
	awaited := 0
	await := func(p pending) {
		if err := d.awaitAck(ctx, p.f); err != nil && errs[p.job] == nil {
			errs[p.job] = d.tagError(p.f.Msg(), err)
		}
	}
	for i, f := range futures {
		if f == nil || errs[i] != nil || d.cfg.NoHistory || f.Msg().Header.Get(HeaderTags) == "" {
			continue
		}
		for _, e := range d.tagMsgs(f.Msg()) {
			tf, err := d.js.PublishMsgAsync(e)
			for errors.Is(err, jetstream.ErrTooManyStalledMsgs) && awaited < len(ps) {
				await(ps[awaited])
				awaited++
				tf, err = d.js.PublishMsgAsync(e)
			}
			if err != nil {
				errs[i] = d.tagError(e, err)
				break
			}
			ps = append(ps, pending{i, tf})
		}
	}
	for ; awaited < len(ps); awaited++ {
		await(ps[awaited])
	}
}
