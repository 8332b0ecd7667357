//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package freeport

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// claim takes port for this process until it exits, or reports false when
// another caller (this process or another) took it first. A claim is an
// exclusive lock on a file named after the port in a directory every
// process shares: the kernel releases it when the process exits, however
// it exits, and the file descriptor is never closed before that.
func claim(port int) (bool, error) {
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("jetfleet-freeport-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("freeport: claim directory: %w", err)
	}
	name := filepath.Join(dir, fmt.Sprintf("%d.lock", port))
	fd, err := syscall.Open(name, syscall.O_CREAT|syscall.O_RDONLY|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return false, fmt.Errorf("freeport: claim file for port %d: %w", port, err)
	}
	if err := syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		syscall.Close(fd)
		if err == syscall.EWOULDBLOCK {
			return false, nil
		}
		return false, fmt.Errorf("freeport: lock the claim file for port %d: %w", port, err)
	}
	return true, nil
}
