package workers

import "time"

// SetStoreRetriesFrom sets the shortest retry wait for which w stores a
// failed job again instead of handing it back (storeRetriesFrom), so that
// a test sees stored retries run without waiting minutes.
func SetStoreRetriesFrom(w *Worker, d time.Duration) { w.storeRetriesFrom = d }
