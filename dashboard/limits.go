package dashboard

import (
	"maps"
	"slices"

	"github.com/jetfleet/jetfleet/bus"
)

// waitingRow is one line of the overview's "waiting for a fleet-wide
// limit" table.
type waitingRow struct {
	Queue, Kind string
	Jobs        uint64
}

// waitingRows lists the jobs the workers hold for a concurrency slot or a
// rate token, by queue (in the stats' order) and kind (sorted).
func waitingRows(st *bus.Stats) []waitingRow {
	var rows []waitingRow
	for _, q := range st.Queues {
		for _, kind := range slices.Sorted(maps.Keys(q.WaitingKinds)) {
			rows = append(rows, waitingRow{Queue: q.Queue, Kind: kind, Jobs: q.WaitingKinds[kind]})
		}
	}
	return rows
}
