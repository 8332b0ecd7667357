// Command catalog is jetfleet's reference app as a service of its own:
// `catalog serve` runs a web node, `catalog work` a worker process and
// `catalog migrate` applies its schema — with the flags and environment
// names of jetfleet's own nodes, from package node. `jetfleet up` runs the
// same app in one process on embedded defaults.
package main

import (
	"github.com/jetfleet/jetfleet/examples/catalog/catalog"
	"github.com/jetfleet/jetfleet/node"
)

func main() {
	node.Main(catalog.App(catalog.Config{}))
}
