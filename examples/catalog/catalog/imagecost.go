package catalog

import (
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"slices"
)

// What one image's work allocates, worked out from its header before any
// of it is allocated, so that the worker can refuse what its memory
// budget cannot hold and wait for budget rather than all jobs allocating
// at once. Every figure is an upper bound for Go's image/png and
// image/jpeg decoders and golang.org/x/image/draw's Catmull-Rom scaler as
// this package calls them (the catalog's fuzz test checks it against what
// decoding and resizing really allocate).

// imageCost is the memory one image's work allocates, in bytes.
type imageCost struct {
	file   int64  // reading the original from the object store
	decode int64  // the decoder's buffers and the decoded image
	resize int64  // scaling buffers, the thumbnails and their encodings
	kind   string // what the decoder makes of it: "16-bit RGBA PNG, 8 bytes per pixel"
}

func (c imageCost) total() int64 { return c.file + c.decode + c.resize }

// fileCost is what reading a file of size bytes from the object store
// allocates: its chunks and a buffer that doubles as it grows.
func fileCost(size uint64) int64 { return 2*int64(size) + 1<<20 }

// decodeSlack covers the decoders' fixed buffers (zlib window, Huffman
// tables, bufio): well under this.
const decodeSlack = 256 << 10

// estimateCost is what decoding data (a file of format whose header gave
// cfg) and making thumbnails of widths allocates.
func estimateCost(data []byte, format string, cfg image.Config, widths []int) imageCost {
	c := imageCost{file: fileCost(uint64(len(data)))}
	if format == "png" {
		c.decode, c.kind = pngCost(data, cfg)
	} else {
		c.decode, c.kind = jpegCost(data, cfg)
	}
	c.resize = resizeCost(cfg.Width, cfg.Height, widths)
	return c
}

// pngCost is what image/png allocates to decode data: the image in the
// type the color model and a tRNS chunk make it (gray with transparency
// becomes NRGBA, for example), twice that for an interlaced file (each
// pass is decoded apart, then merged), and two rows of filter buffers.
func pngCost(data []byte, cfg image.Config) (int64, string) {
	interlaced, trns := pngFlags(data)
	bpp, name := pngPixel(cfg.ColorModel, trns)
	n := int64(cfg.Width) * int64(cfg.Height) * bpp
	kind := fmt.Sprintf("%s PNG, %s per pixel", name, plural(bpp, "byte"))
	if interlaced {
		n *= 2
		kind += ", interlaced"
	}
	return n + 2*(1+8*int64(cfg.Width)) + decodeSlack, kind
}

// pngPixel is the bytes per pixel of the image image/png decodes a PNG
// of color model m into.
func pngPixel(m color.Model, trns bool) (int64, string) {
	if _, ok := m.(color.Palette); ok {
		return 1, "paletted"
	}
	switch m {
	case color.GrayModel:
		if trns {
			return 4, "8-bit gray with transparency"
		}
		return 1, "8-bit gray"
	case color.Gray16Model:
		if trns {
			return 8, "16-bit gray with transparency"
		}
		return 2, "16-bit gray"
	case color.RGBAModel, color.NRGBAModel:
		return 4, "8-bit RGBA"
	}
	return 8, "16-bit RGBA"
}

// pngFlags reads, from the chunks before the first IDAT, whether the PNG
// is interlaced and has a tRNS chunk. A header cut short says yes to both:
// the estimate stays an upper bound.
func pngFlags(data []byte) (interlaced, trns bool) {
	for off := 8; off+8 <= len(data); {
		n := int(binary.BigEndian.Uint32(data[off:]))
		switch string(data[off+4 : off+8]) {
		case "IHDR":
			if off+8+13 > len(data) {
				return true, true
			}
			interlaced = data[off+8+12] != 0
		case "tRNS":
			trns = true
		case "IDAT":
			return interlaced, trns
		}
		if n < 0 || n > len(data) {
			break
		}
		off += 12 + n
	}
	return true, true
}

// jpegCost is what image/jpeg allocates to decode data: one plane per
// component at full resolution (subsampled planes are smaller), padded to
// whole 32-pixel blocks; an RGBA or CMYK image besides when the planes
// are converted (Adobe RGB, CMYK); and, for a progressive file, 4 bytes
// of coefficients per pixel and component, kept between scans.
func jpegCost(data []byte, cfg image.Config) (int64, string) {
	comps, converted, name := int64(3), int64(0), "YCbCr"
	switch cfg.ColorModel {
	case color.GrayModel:
		comps, name = 1, "gray"
	case color.RGBAModel:
		converted, name = 4, "RGB"
	case color.CMYKModel:
		comps, converted, name = 4, 4, "CMYK"
	}
	bpp := comps + converted
	if jpegProgressive(data) {
		bpp += 4 * comps
		name = "progressive " + name
	}
	padded := int64(cfg.Width+31) / 32 * 32 * (int64(cfg.Height+31) / 32 * 32)
	return padded*bpp + decodeSlack, fmt.Sprintf("%s JPEG, %s per pixel", name, plural(bpp, "byte"))
}

// jpegProgressive reports whether the frame of a JPEG file is progressive,
// walking its segments to the first start of frame. A header cut short
// says yes: the estimate stays an upper bound.
func jpegProgressive(data []byte) bool {
	for off := 2; off+4 <= len(data); {
		if data[off] != 0xff {
			return true
		}
		marker := data[off+1]
		switch {
		case marker == 0xff: // fill byte
			off++
			continue
		case marker == 0xc2 || marker == 0xc6 || marker == 0xca || marker == 0xce:
			return true
		case marker >= 0xc0 && marker <= 0xcf && marker != 0xc4 && marker != 0xc8 && marker != 0xcc:
			return false
		}
		off += 2 + int(binary.BigEndian.Uint16(data[off+2:]))
	}
	return true
}

// thumbSize is the size of the thumbnail width pixels wide of a w×h image:
// never wider than the image, proportions kept.
func thumbSize(w, h, width int) (int, int) {
	width = min(width, w)
	return width, max(1, (h*width+w/2)/w)
}

// encodeSlack covers an encoder's fixed state (a zlib writer, row
// buffers): well under this.
const encodeSlack = 2 << 20

// resizeCost is what making the thumbnails of a w×h image allocates, the
// widest first from the original and each other from the one before (see
// makeThumbnails): per thumbnail the RGBA image, the Catmull-Rom scaler's
// buffer (32 bytes per thumbnail column and source row) and weights, and
// the encoding, whose buffer doubles as it grows.
func resizeCost(w, h int, widths []int) int64 {
	widths = slices.Sorted(slices.Values(widths))
	slices.Reverse(widths)
	var total int64
	srcW, srcH := int64(w), int64(h)
	for _, width := range widths {
		tw, th := thumbSize(w, h, width)
		dw, dh := int64(tw), int64(th)
		dst := 4 * dw * dh
		total += dst + 32*dw*srcH + 128*(srcW+srcH+dw+dh) + 2*dst + encodeSlack
		srcW, srcH = dw, dh
	}
	return total
}

// plural writes n things: "1 byte", "8 bytes".
func plural(n int64, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}
