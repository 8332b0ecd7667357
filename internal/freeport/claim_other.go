//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package freeport

// claim takes every port on systems without flock: callers there rely on
// the listen check alone.
func claim(int) (bool, error) { return true, nil }
