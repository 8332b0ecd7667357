package catalogtest

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"hash/crc32"
)

// Crafted images: valid files, small on the wire, whose decoded size is
// whatever the test asks for. They are what an attacker uploads to make a
// worker allocate: a few hundred kilobytes that decode to hundreds of
// megabytes. All pixels are zero (black, or white ink for CMYK), so the
// files compress to almost nothing and are made in well under a second.

// PNG16 returns a w×h PNG of 16-bit RGBA pixels (8 bytes each once
// decoded): 6320×6320 is a 390 KB file under 40 megapixels that decodes
// to 320 MB.
func PNG16(w, h int) []byte { return flatPNG(w, h, 6, 16, nil) }

// PalettedPNG returns a w×h PNG of 8-bit palette indexes (1 byte per
// pixel once decoded).
func PalettedPNG(w, h int) []byte { return flatPNG(w, h, 3, 8, []byte{0, 0, 0, 255, 255, 255}) }

// DeclaredPNG returns a PNG whose header declares w×h 8-bit RGBA pixels
// but whose data holds a single row: any decoder that trusts the header
// allocates the whole image before it finds the data missing.
func DeclaredPNG(w, h int) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	pngChunk(&b, "IHDR", ihdr(w, h, 8, 6))
	pngChunk(&b, "IDAT", zlibRows(1, 1+4*w))
	pngChunk(&b, "IEND", nil)
	return b.Bytes()
}

// flatPNG is a w×h PNG of colorType and depth whose pixels are all zero.
func flatPNG(w, h int, colorType, depth byte, palette []byte) []byte {
	channels := map[byte]int{0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colorType]
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	pngChunk(&b, "IHDR", ihdr(w, h, depth, colorType))
	if palette != nil {
		pngChunk(&b, "PLTE", palette)
	}
	pngChunk(&b, "IDAT", zlibRows(h, 1+(w*channels*int(depth)+7)/8))
	pngChunk(&b, "IEND", nil)
	return b.Bytes()
}

func ihdr(w, h int, depth, colorType byte) []byte {
	d := make([]byte, 13)
	binary.BigEndian.PutUint32(d[0:], uint32(w))
	binary.BigEndian.PutUint32(d[4:], uint32(h))
	d[8], d[9] = depth, colorType // compression, filter and interlace stay 0
	return d
}

// zlibRows compresses n rows of rowLen zero bytes (filter type 0, zero
// pixels).
func zlibRows(n, rowLen int) []byte {
	var b bytes.Buffer
	z, _ := zlib.NewWriterLevel(&b, zlib.BestSpeed)
	row := make([]byte, rowLen)
	for range n {
		z.Write(row)
	}
	z.Close()
	return b.Bytes()
}

func pngChunk(b *bytes.Buffer, typ string, data []byte) {
	binary.Write(b, binary.BigEndian, uint32(len(data)))
	crc := crc32.NewIEEE()
	crc.Write([]byte(typ))
	crc.Write(data)
	b.WriteString(typ)
	b.Write(data)
	binary.Write(b, binary.BigEndian, crc.Sum32())
}

// FlatJPEG returns a valid w×h JPEG of comps components (1: gray, 3:
// YCbCr, 4: CMYK with an Adobe marker), no subsampling, every block
// zero: about one byte per 8×8 pixels. Progressive files hold a single DC
// scan, which decoders accept; Go's decoder then keeps 4 bytes of
// coefficients per pixel and component besides the image.
func FlatJPEG(w, h, comps int, progressive bool) []byte {
	bitsPerBlock := 2 // DC "0" and AC EOB "0"
	if progressive {
		bitsPerBlock = 1
	}
	blocks := ((w + 7) / 8) * ((h + 7) / 8) * comps
	return jpegFile(w, h, comps, progressive, (blocks*bitsPerBlock+7)/8+1)
}

// DeclaredJPEG returns a YCbCr JPEG whose header declares w×h pixels but
// whose scan holds the data of a few blocks only.
func DeclaredJPEG(w, h int) []byte { return jpegFile(w, h, 3, false, 16) }

// jpegFile is FlatJPEG with dataLen bytes of scan data.
func jpegFile(w, h, comps int, progressive bool, dataLen int) []byte {
	var b bytes.Buffer
	b.Write([]byte{0xff, 0xd8})
	if comps == 4 {
		jpegSegment(&b, 0xee, []byte("Adobe\x00\x64\x00\x00\x00\x00\x00")) // transform 0: CMYK
	}
	jpegSegment(&b, 0xdb, append([]byte{0}, bytes.Repeat([]byte{1}, 64)...))
	sof := []byte{8, byte(h >> 8), byte(h), byte(w >> 8), byte(w), byte(comps)}
	for i := range comps {
		sof = append(sof, byte(i+1), 0x11, 0)
	}
	marker := byte(0xc0)
	if progressive {
		marker = 0xc2
	}
	jpegSegment(&b, marker, sof)
	// One code, "0", in each table: DC category 0 and AC end of block.
	jpegSegment(&b, 0xc4, append([]byte{0x00, 1}, append(make([]byte, 15), 0)...))
	if !progressive {
		jpegSegment(&b, 0xc4, append([]byte{0x10, 1}, append(make([]byte, 15), 0)...))
	}
	sos := []byte{byte(comps)}
	for i := range comps {
		sos = append(sos, byte(i+1), 0)
	}
	se := byte(63)
	if progressive {
		se = 0
	}
	jpegSegment(&b, 0xda, append(sos, 0, se, 0))
	b.Write(make([]byte, dataLen))
	b.Write([]byte{0xff, 0xd9})
	return b.Bytes()
}

func jpegSegment(b *bytes.Buffer, marker byte, data []byte) {
	b.Write([]byte{0xff, marker, byte((len(data) + 2) >> 8), byte(len(data) + 2)})
	b.Write(data)
}
