package freeport_test

import (
	"fmt"
	"net"
	"strconv"

	"github.com/jetfleet/jetfleet/internal/freeport"
)

// A test picks the ports of a three-node cluster's routes before it
// writes their configuration files.
func Example() {
	routes, err := freeport.Ports(3)
	if err != nil {
		panic(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(routes[0]))
	if err != nil {
		panic(err)
	}
	defer l.Close()
	fmt.Println(len(routes), "ports; the first one listens")
	// Output: 3 ports; the first one listens
}
