package sessions

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// localCopy is this node's copy of the bucket, kept by a KV watch: every
// write to any session reaches every node in the bucket's order, so most
// loads need no request to NATS at all. Like a follower's copy, it may be
// behind the bucket; it is only used when its revision of a session is at
// least the revision the client has seen (the revision cookie), so a client
// always reads its own writes. See load.
//
// The copy holds at most max sessions; a session it has no room for is
// read from the bucket.
type localCopy struct {
	max int
	ttl time.Duration // the bucket's TTL

	mu sync.RWMutex
	// entries maps a storage key to its latest value known here.
	entries map[string]*copyEntry
	// pos is the bucket revision (stream sequence) the watch has applied
	// up to: every write at or below pos is reflected in entries.
	pos uint64
	// ready is set once the watch has delivered the bucket's initial
	// content; until then every load asks NATS.
	ready bool
	// stopped is set when the watch ends (the connection closed).
	stopped bool
}

// copyEntry is one session's stored bytes at a revision, decoded on the
// first load that uses it.
type copyEntry struct {
	value []byte
	rev   uint64
	// removed is set when the bucket no longer holds rev (see
	// forgetRemoved): the value is not served any more, but rev is still
	// the latest revision of the key this node has seen, which no load on
	// this node may go below (see floor).
	removed bool
	// gone is when the bucket's TTL removes this value, unless written
	// again: the copy forgets it then too.
	gone time.Time

	once sync.Once
	rec  *record // nil when value does not decode
}

func (e *copyEntry) record() *record {
	e.once.Do(func() {
		if rec, err := decodeRecord(e.value); err == nil {
			e.rec = rec
		}
	})
	return e.rec
}

func newLocalCopy(max int, ttl time.Duration) *localCopy {
	return &localCopy{max: max, ttl: ttl, entries: map[string]*copyEntry{}}
}

// get returns the copy's entry for key when the copy is usable and holds
// key at revision known or later.
func (c *localCopy) get(key string, known uint64) (*copyEntry, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if !c.ready || c.stopped {
		return nil, false
	}
	e, ok := c.entries[key]
	if !ok || e.removed || e.rev < known {
		return nil, false
	}
	return e, true
}

// floor is the latest revision of key this node has seen (0 for none): a
// load that cannot use the copy still asks for at least that revision, so
// a client never reads on this node a value older than one it was served
// here before, whatever revision its cookie holds (tabs share the cookie,
// and a tab's late response can lower it).
func (c *localCopy) floor(key string) uint64 {
	if c == nil {
		return 0
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e, ok := c.entries[key]; ok {
		return e.rev
	}
	return 0
}

// learn records a value this node read from the bucket or wrote to it at
// rev. It is only kept when the watch has not reached rev yet: the watch
// will then deliver rev and every later write of key in order, so the copy
// cannot keep a value the bucket has since replaced. A value at or below
// the watch's position is already reflected (or superseded) in the copy.
func (c *localCopy) learn(key string, value []byte, rev uint64) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rev <= c.pos || c.stopped {
		return
	}
	c.put(key, &copyEntry{value: value, rev: rev, gone: time.Now().Add(c.ttl)})
}

// forget drops key, after this node deleted it.
func (c *localCopy) forget(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.entries, key)
	c.mu.Unlock()
}

// put stores e unless the copy already has a later revision of key (or
// this one, not removed). c.mu is held.
func (c *localCopy) put(key string, e *copyEntry) {
	have, ok := c.entries[key]
	switch {
	case ok && (have.rev > e.rev || have.rev == e.rev && !have.removed):
		return
	case !ok && len(c.entries) >= c.max:
		return // no room: this session is read from the bucket
	}
	c.entries[key] = e
}

// apply is one update from the watch, in the bucket's order.
func (c *localCopy) apply(key string, value []byte, rev uint64, op jetstream.KeyValueOp, written time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rev > c.pos {
		c.pos = rev
	}
	if op != jetstream.KeyValuePut {
		delete(c.entries, key)
		return
	}
	c.put(key, &copyEntry{value: value, rev: rev, gone: written.Add(c.ttl)})
}

// sweep forgets the values the bucket's TTL has removed (no message tells
// the watch about those).
func (c *localCopy) sweep(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if now.After(e.gone) {
			delete(c.entries, k)
		}
	}
}

// sweepEvery is how often the copy forgets what the bucket removed: a
// tenth of the TTL, between a second and a minute.
func (c *localCopy) sweepEvery() time.Duration { return min(max(c.ttl/10, time.Second), time.Minute) }

// forgetRemovedEvery runs forgetRemoved every sweep until ctx ends, apart
// from the watch, which a slow answer must not hold up.
func (c *localCopy) forgetRemovedEvery(ctx context.Context, first func(context.Context) (uint64, error)) {
	tick := time.NewTicker(c.sweepEvery())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			actx, cancel := context.WithTimeout(ctx, time.Second)
			seq, err := first(actx)
			cancel()
			if err == nil { // else the next sweep asks again
				c.forgetRemoved(seq)
			}
		}
	}
}

// forgetRemoved stops serving the values below first, the lowest revision
// the bucket holds: the bucket has removed each, either because its limits
// removed the session or because a later write replaced it that the watch
// has not delivered yet. The copy cannot tell which, so it keeps the
// revision as the key's floor and lets the bucket answer.
func (c *localCopy) forgetRemoved(first uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		if e.rev < first && !e.removed {
			c.entries[k] = &copyEntry{rev: e.rev, removed: true, gone: e.gone}
		}
	}
}

// follow keeps c up to date with kv until ctx ends or the watch stops.
// Every sweep also asks first for the lowest revision the bucket still
// holds and forgets what lies below it: the values the bucket's byte bound
// removed (no message tells the watch about those either).
func (c *localCopy) follow(ctx context.Context, kv jetstream.KeyValue, first func(context.Context) (uint64, error)) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	go c.forgetRemovedEvery(ctx, first)
	go func() {
		defer func() {
			c.mu.Lock()
			c.stopped = true
			c.mu.Unlock()
		}()
		tick := time.NewTicker(c.sweepEvery())
		defer tick.Stop()
		for {
			select {
			case now := <-tick.C:
				c.sweep(now)
			case <-ctx.Done():
				_ = w.Stop()
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil { // the initial content is in
					c.mu.Lock()
					c.ready = true
					c.mu.Unlock()
					continue
				}
				c.apply(e.Key(), e.Value(), e.Revision(), e.Operation(), e.Created())
			}
		}
	}()
	return nil
}
