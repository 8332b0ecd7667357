package catalog_test

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/png"
	"testing"

	"github.com/jetfleet/jetfleet/examples/catalog/catalog"
	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
)

// withChunk inserts a PNG chunk before the first IDAT of a PNG.
func withChunk(data []byte, typ string, body []byte) []byte {
	i := bytes.Index(data, []byte("IDAT")) - 4
	var chunk bytes.Buffer
	binary.Write(&chunk, binary.BigEndian, uint32(len(body)))
	chunk.WriteString(typ)
	chunk.Write(body)
	binary.Write(&chunk, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), body...)))
	return append(append(append([]byte(nil), data[:i]...), chunk.Bytes()...), data[i:]...)
}

// interlacedGray is a w×h 8-bit gray PNG, Adam7 interlaced, all black.
func interlacedGray(w, h int) []byte {
	var raw []byte
	for _, p := range []struct{ x0, dx, y0, dy int }{{0, 8, 0, 8}, {4, 8, 0, 8}, {0, 4, 4, 8}, {2, 4, 0, 4}, {0, 2, 2, 4}, {1, 2, 0, 2}, {0, 1, 1, 2}} {
		pw, ph := (w-p.x0+p.dx-1)/p.dx, (h-p.y0+p.dy-1)/p.dy
		if pw > 0 && ph > 0 {
			raw = append(raw, make([]byte, ph*(1+pw))...)
		}
	}
	var b bytes.Buffer
	png.Encode(&b, image.NewGray(image.Rect(0, 0, w, h)))
	data := b.Bytes()
	// Keep the signature and IHDR (interlace on), replace the pixel data.
	ihdr := append([]byte(nil), data[8+8:8+8+13]...)
	ihdr[12] = 1
	var out bytes.Buffer
	out.Write(data[:8])
	writeChunk(&out, "IHDR", ihdr)
	writeChunk(&out, "IDAT", zlibBytes(raw))
	writeChunk(&out, "IEND", nil)
	return out.Bytes()
}

func writeChunk(b *bytes.Buffer, typ string, body []byte) {
	binary.Write(b, binary.BigEndian, uint32(len(body)))
	b.WriteString(typ)
	b.Write(body)
	binary.Write(b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), body...)))
}

func pngOf(img image.Image) []byte {
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}

// samples are images of every color model and layout the decoders
// accept, each with what its estimate must say of it.
func samples(w, h int) map[string]struct {
	data []byte
	kind string
} {
	gray := pngOf(image.NewGray(image.Rect(0, 0, w, h)))
	gray16 := pngOf(image.NewGray16(image.Rect(0, 0, w, h)))
	flat := ct.FlatJPEG(w, h, 3, false)
	rgbJPEG := append(append(append([]byte(nil), flat[:2]...), 0xff, 0xee, 0, 14), append([]byte("Adobe\x00\x64\x00\x00\x00\x00\x00"), flat[2:]...)...)
	return map[string]struct {
		data []byte
		kind string
	}{
		"8-bit RGBA PNG":            {ct.PNG(w, h), "8-bit RGBA PNG, 4 bytes per pixel"},
		"16-bit RGBA PNG":           {ct.PNG16(w, h), "16-bit RGBA PNG, 8 bytes per pixel"},
		"paletted PNG":              {ct.PalettedPNG(w, h), "paletted PNG, 1 byte per pixel"},
		"gray PNG":                  {gray, "8-bit gray PNG, 1 byte per pixel"},
		"gray PNG with tRNS":        {withChunk(gray, "tRNS", []byte{0, 0}), "8-bit gray with transparency PNG, 4 bytes per pixel"},
		"16-bit gray PNG":           {gray16, "16-bit gray PNG, 2 bytes per pixel"},
		"16-bit gray PNG with tRNS": {withChunk(gray16, "tRNS", []byte{0, 0}), "16-bit gray with transparency PNG, 8 bytes per pixel"},
		"interlaced gray PNG":       {interlacedGray(w, h), "8-bit gray PNG, 1 byte per pixel, interlaced"},
		"4:2:0 JPEG":                {ct.JPEG(w, h), "YCbCr JPEG, 3 bytes per pixel"},
		"gray JPEG":                 {ct.FlatJPEG(w, h, 1, false), "gray JPEG, 1 byte per pixel"},
		"4:4:4 JPEG":                {flat, "YCbCr JPEG, 3 bytes per pixel"},
		"RGB JPEG":                  {rgbJPEG, "RGB JPEG, 7 bytes per pixel"},
		"CMYK JPEG":                 {ct.FlatJPEG(w, h, 4, false), "CMYK JPEG, 8 bytes per pixel"},
		"progressive YCbCr JPEG":    {ct.FlatJPEG(w, h, 3, true), "progressive YCbCr JPEG, 15 bytes per pixel"},
		"progressive CMYK JPEG":     {ct.FlatJPEG(w, h, 4, true), "progressive CMYK JPEG, 24 bytes per pixel"},
		"declared PNG":              {ct.DeclaredPNG(3*w, 3*h), "8-bit RGBA PNG, 4 bytes per pixel"},
	}
}

// TestEstimateBoundsWhatDecodingAllocates decodes and resizes an image of
// every color model and layout the catalog accepts, and checks that the
// estimate names the decoder's pixel format and is an upper bound of what
// the work really allocates, without being so loose that it refuses what
// would fit (at most four times over).
func TestEstimateBoundsWhatDecodingAllocates(t *testing.T) {
	for name, s := range samples(900, 700) {
		allocated, est, kind, ok := catalog.ImageWorkAllocs(s.data, 1<<30)
		if !ok {
			t.Fatalf("%s: not decoded", name)
		}
		t.Logf("%-26s allocated %6.1f MiB, estimated %6.1f MiB (%s)", name, float64(allocated)/(1<<20), float64(est)/(1<<20), kind)
		if kind != s.kind {
			t.Errorf("%s: estimated as %q, want %q", name, kind, s.kind)
		}
		if allocated > est || est > 4*allocated {
			t.Errorf("%s: allocated %d bytes, estimated %d", name, allocated, est)
		}
	}
}

// TestEstimateOfTheIssuesPNG: the 16-bit RGBA PNG of issue 13 (6320×6320,
// under 40 megapixels) needs more than the whole default budget, and the
// refusal says so with its sizes.
func TestEstimateOfTheIssuesPNG(t *testing.T) {
	err := catalog.CheckOriginal("big.png", ct.PNG16(6320, 6320))
	want := "big.png is 6320×6320 pixels (16-bit RGBA PNG, 8 bytes per pixel): decoding it takes 306 MiB and resizing it 138 MiB, 445 MiB in all, more than the 256 MiB this worker allows for image work"
	if err == nil || err.Error() != want {
		t.Fatalf("checkOriginal: %v\nwant %s", err, want)
	}
}

// FuzzImageWork feeds arbitrary files to the worker's image path: reading
// the header, estimating, decoding and rendering the thumbnails must never
// panic, and must never allocate more than the estimate said (the
// estimate is what the memory budget is charged). Only files whose
// estimate is under 16 MiB are decoded, to keep each run short; the
// estimate of the others is worked out all the same.
func FuzzImageWork(f *testing.F) {
	for _, s := range samples(64, 48) {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		allocated, estimated, kind, ok := catalog.ImageWorkAllocs(data, 16<<20)
		if ok && allocated > estimated {
			t.Fatalf("allocated %d bytes, estimated %d (%s)", allocated, estimated, kind)
		}
	})
}

func zlibBytes(raw []byte) []byte {
	var b bytes.Buffer
	z := zlib.NewWriter(&b)
	z.Write(raw)
	z.Close()
	return b.Bytes()
}
