//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package freeport

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// A port handed out is claimed for the life of the process: a second
// claim fails, in this process and in another one, so two tests (or two
// test binaries of `go test ./...`) are never handed the same port while
// its server has yet to listen on it.
func TestAPortHandedOutIsClaimedUntilTheProcessExits(t *testing.T) {
	if p := os.Getenv("FREEPORT_CLAIM_CHILD"); p != "" {
		port, _ := strconv.Atoi(p)
		ok, err := claim(port)
		if err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString("claimed=" + strconv.FormatBool(ok) + "\n")
		return
	}
	ports, err := Ports(3)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		ok, err := claim(p)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			t.Errorf("port %d was handed out, yet this process could claim it again", p)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestAPortHandedOutIsClaimedUntilTheProcessExits$", "-test.count=1")
		cmd.Env = append(os.Environ(), "FREEPORT_CLAIM_CHILD="+strconv.Itoa(p))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "claimed=false") {
			t.Errorf("port %d was handed out here, yet another process claimed it: %s", p, out)
		}
	}
}

// A claim ends with its process: a port a finished process claimed can be
// claimed again.
func TestAClaimEndsWithItsProcess(t *testing.T) {
	if os.Getenv("FREEPORT_CLAIM_CHILD") != "" {
		t.Skip("child of TestAPortHandedOutIsClaimedUntilTheProcessExits")
	}
	ports, err := Ports(1)
	if err != nil {
		t.Fatal(err)
	}
	// A port this process never claimed, claimed by a child that exits.
	for free := ports[0] + 1; free < ports[0]+20; free++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestAPortHandedOutIsClaimedUntilTheProcessExits$", "-test.count=1")
		cmd.Env = append(os.Environ(), "FREEPORT_CLAIM_CHILD="+strconv.Itoa(free))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "claimed=true") {
			continue // another test process holds it
		}
		ok, err := claim(free)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			t.Errorf("port %d is still claimed after the process that claimed it exited", free)
		}
		return
	}
	t.Fatalf("no child could claim any of the 19 ports after %d", ports[0])
}
