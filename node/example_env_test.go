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

// RedactURL hides passwords and tokens in one URL or a list, as logs and
// errors show them.
func ExampleRedactURL() {
	fmt.Println(node.RedactURL("nats://alice:s3cret@127.0.0.1:4222"))
	fmt.Println(node.RedactURL("nats://Tok3n@n1:4222,nats://n2:4222"))
	fmt.Println(node.RedactURL("tls://bob:not a url@n3:4222"))
	// Output:
	// nats://alice:xxxxx@127.0.0.1:4222
	// nats://xxxxx@n1:4222,nats://n2:4222
	// tls://bob:xxxxx@n3:4222
}
