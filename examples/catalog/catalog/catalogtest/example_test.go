package catalogtest_test

import (
	"fmt"
	"testing"

	"github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
)

// PNG and JPEG make real image files of a given size for upload tests.
func ExamplePNG() {
	t := &testing.T{}
	fmt.Println(catalogtest.DecodedWidth(t, catalogtest.PNG(800, 600)), catalogtest.DecodedWidth(t, catalogtest.JPEG(320, 200)))
	// Output: 800 320
}
