package natsembed_test

import (
	"fmt"
	"os"

	"github.com/jetfleet/jetfleet/internal/natsembed"
)

// Start a single JetStream node on a free loopback port with its own store.
func ExampleStart() {
	dir, _ := os.MkdirTemp("", "natsembed-")
	defer os.RemoveAll(dir)
	srv, err := natsembed.Start(natsembed.Config{Name: "example", Listen: "127.0.0.1:-1", StoreDir: dir})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	fmt.Println(srv.Name(), srv.Running(), srv.ClusterAddr() == nil)
	// Output: example true true
}
