// Package tmpfstest gives tests a small filesystem they can fill: a tmpfs
// mounted for the test and unmounted at its cleanup. Mounting needs root or
// CAP_SYS_ADMIN; where it is not permitted the test is skipped, saying why.
package tmpfstest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// New mounts a tmpfs of size bytes on a new temporary directory and
// returns the directory.
func New(t testing.TB, size int) string {
	t.Helper()
	dir := t.TempDir()
	Mount(t, dir, size)
	return dir
}

// Mount mounts a tmpfs of size bytes on the existing directory dir and
// unmounts it at the test's cleanup.
func Mount(t testing.TB, dir string, size int) {
	t.Helper()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		t.Skipf("full-disk test skipped: cannot mount a tmpfs on %s (it needs root or CAP_SYS_ADMIN): mount: %v: %s", dir, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// Fill writes a file into dir until its filesystem is full (large writes,
// then small ones for the last bytes) and returns the file's path, to be
// removed when space should come back.
func Fill(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for _, n := range []int{len(buf), 512} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filling %s: %v, want ENOSPC in the end", dir, err)
				}
				break
			}
		}
	}
	return path
}
