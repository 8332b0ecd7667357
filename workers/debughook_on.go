//go:build jetfleet_debughooks

package workers

import "os"

// debugTurnHook blocks the fetch loop, for tests of Live through a real
// process: in a binary built with -tags jetfleet_debughooks, when
// JETFLEET_DEBUG_BLOCK_FETCH names a FIFO, the loop's next turn blocks
// until something is written to it (once; the variable is then cleared).
// Normal builds compile debughook.go instead, whose hook does nothing.
func debugTurnHook() {
	fifo := os.Getenv("JETFLEET_DEBUG_BLOCK_FETCH")
	if fifo == "" {
		return
	}
	_, _ = os.ReadFile(fifo) // blocks until a writer opens and closes it
	_ = os.Unsetenv("JETFLEET_DEBUG_BLOCK_FETCH")
}
