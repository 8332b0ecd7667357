package node_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/jetfleet/jetfleet/node"
)

// NATSURL prefers NATS_URL, then the URL `jetfleet up` recorded in the data
// directory, then the default.
func ExampleNATSURL() {
	dir, _ := os.MkdirTemp("", "jetfleet-config-")
	defer os.RemoveAll(dir)
	noEnv := func(string) string { return "" }
	fmt.Println(node.NATSURL(noEnv, dir))
	_ = node.WriteNATSURL(dir, "nats://127.0.0.1:37191")
	fmt.Println(node.NATSURL(noEnv, dir))
	withEnv := func(k string) string {
		if k == "NATS_URL" {
			return "nats://nats.internal:4222"
		}
		return ""
	}
	fmt.Println(node.NATSURL(withEnv, filepath.Join(dir)))
	// Output:
	// nats://127.0.0.1:4222
	// nats://127.0.0.1:37191
	// nats://nats.internal:4222
}
