//go:build jetfleet_debughooks

package workers

import (
	"fmt"
	"os"
	"syscall"
)

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

// debugAfterAckHook kills the process with SIGKILL right after a unique
// job's ack was confirmed and before its key is freed, when
// JETFLEET_DEBUG_KILL_AFTER_ACK is set: the moment a worker's death
// leaves a key held by a job that has ended.
func debugAfterAckHook() {
	if os.Getenv("JETFLEET_DEBUG_KILL_AFTER_ACK") == "" {
		return
	}
	fmt.Fprintln(os.Stderr, "debug hook: killing the worker after the ack, before the unlock")
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}
