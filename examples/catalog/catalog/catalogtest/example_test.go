package catalogtest_test

import (
	"bytes"
	"fmt"
	"image"
	_ "image/jpeg"
	_ "image/png"

	"github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
)

// PNG and JPEG make real image files of a given size for upload tests; the
// standard decoders read them back.
func ExamplePNG() {
	for _, data := range [][]byte{catalogtest.PNG(800, 600), catalogtest.JPEG(320, 200)} {
		cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
		fmt.Println(format, cfg.Width, cfg.Height, err)
	}
	// Output:
	// png 800 600 <nil>
	// jpeg 320 200 <nil>
}
