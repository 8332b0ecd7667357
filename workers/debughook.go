//go:build !jetfleet_debughooks

package workers

// debugTurnHook is a no-op in normal builds (see debughook_on.go).
func debugTurnHook() {}

// debugAfterAckHook is a no-op in normal builds (see debughook_on.go).
func debugAfterAckHook() {}
