package freeport_test

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/jetfleet/jetfleet/internal/freeport"
)

// The ports are distinct, free (a server can listen on each), and below
// the kernel's ephemeral range, where no outgoing connection takes them.
func TestPortsAreFreeAndOutsideTheEphemeralRange(t *testing.T) {
	ports, err := freeport.Ports(50)
	if err != nil {
		t.Fatal(err)
	}
	start := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		start, _ = strconv.Atoi(strings.Fields(string(b))[0])
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if p < 10000 || p >= start {
			t.Errorf("port %d is outside [10000, %d)", p, start)
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("listen on port %d: %v", p, err)
		}
		l.Close()
	}
}

// A port already taken is never handed out.
func TestPortSkipsATakenPort(t *testing.T) {
	ports, err := freeport.Ports(200)
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Listener
	for _, p := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
	}
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for range 200 {
		p, err := freeport.Port()
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range ports {
			if p == q {
				t.Fatalf("port %d is held but was handed out", p)
			}
		}
	}
}
