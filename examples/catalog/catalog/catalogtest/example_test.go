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

// The crafted images are small files that decode to large images: what an
// attacker uploads to exhaust a worker's memory.
func ExamplePNG16() {
	for _, data := range [][]byte{catalogtest.PNG16(6320, 6320), catalogtest.FlatJPEG(3000, 3000, 4, false), catalogtest.DeclaredPNG(100000, 100000)} {
		cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
		fmt.Printf("%s %d×%d in %d KB (%v)\n", format, cfg.Width, cfg.Height, len(data)>>10, err)
	}
	// Output:
	// png 6320×6320 in 378 KB (<nil>)
	// jpeg 3000×3000 in 137 KB (<nil>)
	// png 100000×100000 in 0 KB (<nil>)
}
