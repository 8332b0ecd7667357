package sessions

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The copy never keeps a value the bucket has replaced, whatever order the
// watch's updates and this node's own reads and writes arrive in, and never
// answers a client that has seen a later revision than it holds.
func TestLocalCopyNeverGoesBack(t *testing.T) {
	c := newLocalCopy(10, time.Hour)
	now := time.Now()
	has := func(key string, known, want uint64) {
		t.Helper()
		e, ok := c.get(key, known)
		switch {
		case want == 0 && ok:
			t.Errorf("get(%s, %d) = revision %d, want a miss", key, known, e.rev)
		case want != 0 && (!ok || e.rev != want):
			t.Errorf("get(%s, %d) = %v %v, want revision %d", key, known, e, ok, want)
		}
	}
	c.apply("a", []byte("x"), 5, jetstream.KeyValuePut, now)
	has("a", 0, 0) // not ready: the initial content is not all in
	c.ready = true
	has("a", 5, 5)
	has("a", 6, 0) // the client has seen a later write than the copy holds
	c.learn("a", []byte("y"), 3)
	has("a", 0, 5) // an older read never replaces a newer value
	c.learn("a", []byte("y"), 7)
	has("a", 7, 7) // this node's own write, ahead of the watch
	c.apply("a", []byte("x"), 6, jetstream.KeyValuePut, now)
	has("a", 0, 7) // the watch catching up does not go back
	c.apply("a", nil, 8, jetstream.KeyValueDelete, now)
	has("a", 0, 0)
	c.learn("a", []byte("y"), 7) // a read answered before the delete, arriving after it
	has("a", 0, 0)
	c.apply("b", []byte("x"), 9, jetstream.KeyValuePut, now.Add(-2*time.Hour))
	c.sweep(now)
	has("b", 0, 0) // aged out of the bucket by its TTL
}

func TestLocalCopyStaysWithinItsSize(t *testing.T) {
	c := newLocalCopy(2, time.Hour)
	c.ready = true
	for i, k := range []string{"a", "b", "c"} {
		c.apply(k, []byte("x"), uint64(i+1), jetstream.KeyValuePut, time.Now())
	}
	if _, ok := c.get("c", 0); ok || len(c.entries) != 2 {
		t.Errorf("copy of size 2 holds %d entries (c: %v)", len(c.entries), ok)
	}
	c.apply("a", []byte("x"), 4, jetstream.KeyValuePut, time.Now())
	if e, ok := c.get("a", 0); !ok || e.rev != 4 {
		t.Errorf("a full copy did not update a session it holds: %v %v", e, ok)
	}
}

// A revision the sweep found gone from the bucket is no longer served, but
// stays the key's floor until a later revision (or the same one, read
// again) replaces it.
func TestLocalCopyKeepsTheFloorOfWhatItStoppedServing(t *testing.T) {
	c := newLocalCopy(10, time.Hour)
	c.ready = true
	c.apply("a", []byte("x"), 5, jetstream.KeyValuePut, time.Now())
	c.apply("b", []byte("x"), 9, jetstream.KeyValuePut, time.Now())
	c.forgetRemoved(7)
	if e, ok := c.get("a", 0); ok {
		t.Errorf("get(a) after the bucket removed revision 5: revision %d served", e.rev)
	}
	if f := c.floor("a"); f != 5 {
		t.Errorf("floor(a) = %d; want 5", f)
	}
	if e, ok := c.get("b", 0); !ok || e.rev != 9 {
		t.Errorf("get(b) = %v %v; want revision 9, which the bucket still holds", e, ok)
	}
	c.learn("a", []byte("y"), 5)
	if _, ok := c.get("a", 0); ok {
		t.Error("a read at or below the watch's position brought revision 5 back")
	}
	c.apply("a", []byte("z"), 11, jetstream.KeyValuePut, time.Now())
	if e, ok := c.get("a", 0); !ok || e.rev != 11 || c.floor("a") != 11 {
		t.Errorf("get(a) after a new write = %v %v, floor %d; want revision 11", e, ok, c.floor("a"))
	}
	if f := c.floor("none"); f != 0 {
		t.Errorf("floor of a key never seen = %d", f)
	}
	c.learn("c", []byte("x"), 20) // this node's own write, ahead of the watch
	c.forgetRemoved(21)
	c.learn("c", []byte("x"), 20) // read again: the bucket holds it after all
	if e, ok := c.get("c", 20); !ok || e.rev != 20 {
		t.Errorf("get(c) after reading revision 20 again = %v %v; want it served", e, ok)
	}
}
