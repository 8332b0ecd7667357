//go:build linux

package mariadbtest

import "syscall"

// sysProcAttr makes the kernel kill mariadbd when the test process dies, so
// a test binary killed by its timeout leaves no server behind.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
