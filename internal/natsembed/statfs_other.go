//go:build !(linux || darwin || freebsd)

package natsembed

import (
	"errors"
	"fmt"
)

// FreeBytes is how many bytes an unprivileged writer may still write on
// the filesystem that holds dir. It is not implemented on this system.
func FreeBytes(dir string) (uint64, error) {
	return 0, fmt.Errorf("natsembed: free space of %s: %w", dir, errors.ErrUnsupported)
}
