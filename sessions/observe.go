package sessions

// Event is a session store operation, reported to Config.Observe for
// metrics.
type Event string

// Events reported to Config.Observe.
const (
	// EventLoad: a session was read from the bucket (found or not).
	EventLoad Event = "load"
	// EventSave: a session was written to the bucket.
	EventSave Event = "save"
	// EventConflict: a write met a concurrent write to the same session
	// (a revision mismatch); the save reloads, merges and tries again.
	EventConflict Event = "conflict"
	// EventStaleCopy: a load found this node's copy of the session, or the
	// replica that answered its direct get, older than the revision the
	// client has already seen (or without the session), and asked the
	// stream leader instead. Frequent ones mean a lagging replica.
	EventStaleCopy Event = "stale_copy"
	// EventStoreError: NATS or the bucket could not be reached, or refused
	// a write (too large).
	EventStoreError Event = "store_error"
	// EventEvicted: a client came back to a session the bucket's byte
	// bound (Config.MaxBytes) had removed before its idle deadline; it
	// got a fresh session. Frequent ones mean the bound is too small for
	// the sessions in use.
	EventEvicted Event = "evicted"
)

// observe reports ev to Config.Observe when it is set.
func (m *Manager) observe(ev Event) {
	if m.cfg.Observe != nil {
		m.cfg.Observe(ev)
	}
}
