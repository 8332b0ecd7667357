package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/image/draw"
)

// maxPixels bounds the images the worker decodes (about 160 MB of RGBA), so
// a small file claiming huge dimensions cannot exhaust its memory.
const maxPixels = 40_000_000

// badImageError is an original that can never be processed: not an image,
// too large, gone. Its message names the file.
type badImageError struct{ msg string }

func (e *badImageError) Error() string { return e.msg }

func badImage(format string, args ...any) error {
	return &badImageError{msg: fmt.Sprintf(format, args...)}
}

// loadOriginal reads and decodes one uploaded original, JPEG or PNG only.
func (c *Catalog) loadOriginal(ctx context.Context, ref ImageRef) (image.Image, string, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	data, err := c.images.GetBytes(ctx, ref.Object)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, "", badImage("%s: the uploaded file is gone from the object store (uploaded again since?)", ref.Name)
	}
	if err != nil {
		return nil, "", err
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil || (format != "jpeg" && format != "png") {
		if err == nil {
			err = fmt.Errorf("it is %s", format)
		}
		return nil, "", badImage("%s is not a JPEG or PNG image (%v)", ref.Name, err)
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width*cfg.Height > maxPixels {
		return nil, "", badImage("%s is %dx%d pixels: at most %d megapixels are accepted", ref.Name, cfg.Width, cfg.Height, maxPixels/1_000_000)
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, "", badImage("%s is a damaged %s image (%v)", ref.Name, format, err)
	}
	return img, format, nil
}

// thumbnail scales src to width pixels wide, keeping its proportions. An
// image narrower than width keeps its size: thumbnails never enlarge.
func thumbnail(src image.Image, width int) image.Image {
	b := src.Bounds()
	if b.Dx() < width {
		width = b.Dx()
	}
	height := max(1, (b.Dy()*width+b.Dx()/2)/b.Dx())
	dst := image.NewRGBA(image.Rect(0, 0, width, height))
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, b, draw.Src, nil)
	return dst
}

// encode writes img in format ("jpeg" or "png").
func encode(img image.Image, format string) ([]byte, error) {
	var buf bytes.Buffer
	var err error
	if format == "png" {
		err = png.Encode(&buf, img)
	} else {
		err = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 85})
	}
	return buf.Bytes(), err
}
