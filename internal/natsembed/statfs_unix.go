//go:build linux || darwin || freebsd

package natsembed

import (
	"fmt"
	"syscall"
)

// FreeBytes is how many bytes an unprivileged writer may still write on
// the filesystem that holds dir.
func FreeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("natsembed: statfs %s: %w", dir, err)
	}
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
