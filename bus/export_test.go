package bus

import "time"

// SetAfterRepublish installs a hook that runs between a retry's republish
// and the removal of its dead letter; an error stops the retry there, as a
// crash of the retrying process would. Tests only.
func SetAfterRepublish(in *Inspector, f func(*FailedJob) error) { in.afterRepublish = f }

// SetClearGrace sets how young a unique key Clear leaves held. Tests only.
func SetClearGrace(in *Inspector, d time.Duration) { in.clearGrace = d }

// SetUniqueGrace sets how young a unique key a dispatch never takes over
// from a holder that ended. Tests only.
func SetUniqueGrace(d *Dispatcher, dur time.Duration) { d.uniqueGrace = dur }
