package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetfleet/jetfleet/sessions"
)

// Sessions counts session store operations. Use Observe as
// sessions.Config.Observe. It is safe for concurrent use.
type Sessions struct {
	counters map[sessions.Event]prometheus.Counter
}

// NewSessions creates the session metrics and registers them on reg:
// jetfleet_session_loads_total, _saves_total, _conflicts_total,
// _store_errors_total and _evicted_total.
func NewSessions(reg prometheus.Registerer) (*Sessions, error) {
	s := &Sessions{counters: map[sessions.Event]prometheus.Counter{}}
	for _, c := range []struct {
		ev         sessions.Event
		name, help string
	}{
		{sessions.EventLoad, "jetfleet_session_loads_total", "Sessions read from the KV bucket."},
		{sessions.EventSave, "jetfleet_session_saves_total", "Sessions written to the KV bucket."},
		{sessions.EventConflict, "jetfleet_session_conflicts_total", "Session writes that met a concurrent write and were merged and retried."},
		{sessions.EventStoreError, "jetfleet_session_store_errors_total", "Session loads and saves that failed because NATS or the bucket could not be reached (or refused the write)."},
		{sessions.EventEvicted, "jetfleet_session_evicted_total", "Clients that came back to a session the bucket's byte bound (SESSION_MAX_BYTES) had removed; each got a fresh session."},
	} {
		counter := prometheus.NewCounter(prometheus.CounterOpts{Name: c.name, Help: c.help})
		if err := register(reg, counter); err != nil {
			return nil, err
		}
		s.counters[c.ev] = counter
	}
	return s, nil
}

// Observe counts one store operation; use it as sessions.Config.Observe.
func (s *Sessions) Observe(ev sessions.Event) {
	if c, ok := s.counters[ev]; ok {
		c.Inc()
	}
}
