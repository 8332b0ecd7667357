// Package freeport finds loopback TCP ports for test servers that must be
// told their port before they start (cluster routes, configuration files,
// proxies).
//
// A port the kernel hands out for ":0" comes from its ephemeral range,
// the same range it takes the source ports of outgoing connections from:
// once the probe closes, any connection the machine opens (a NATS route
// retrying, a client, a proxy) may get that port as its source, and the
// server meant to listen on it then fails with "address already in use".
// So the ports come from below the ephemeral range, which the kernel never
// hands out by itself; each is checked free by listening on it, and all n
// are held until every one is found.
//
// A port is free only until its server listens on it, and a test server
// starts a while after its port was found (a cluster's third node after
// the first two): another test, in this process or in another package's
// test binary running beside it, must not be handed the same port in the
// meantime. So each port handed out is also claimed for the life of the
// process (a lock on a file named after it, see claim), and a port that
// another caller claimed is skipped.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is the lowest port handed out: well clear of the ports services
// are known by.
const lowest = 10000

// Ports returns n distinct loopback TCP ports that were free a moment ago,
// outside the kernel's ephemeral range when that leaves room.
func Ports(n int) ([]int, error) {
	held := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	top := ephemeralStart()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		addr := "127.0.0.1:0"
		if top-lowest >= 1000 && tries < 100*n {
			addr = "127.0.0.1:" + strconv.Itoa(lowest+rand.IntN(top-lowest))
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if addr == "127.0.0.1:0" {
				return nil, fmt.Errorf("freeport: listen on a loopback port: %w", err)
			}
			continue // taken: try another
		}
		held = append(held, l)
		port := l.Addr().(*net.TCPAddr).Port
		ok, err := claim(port)
		if err != nil {
			return nil, err
		}
		if ok {
			ports = append(ports, port)
		}
	}
	return ports, nil
}

// Port returns one loopback TCP port that was free a moment ago.
func Port() (int, error) {
	ports, err := Ports(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// ephemeralStart is the first port of the kernel's ephemeral range
// (Linux's default when it cannot be read).
func ephemeralStart() int {
	const linuxDefault = 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return linuxDefault
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return linuxDefault
	}
	p, err := strconv.Atoi(f[0])
	if err != nil {
		return linuxDefault
	}
	return p
}
