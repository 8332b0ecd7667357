package catalog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"slices"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/image/draw"
)

// maxPixels bounds the images the worker decodes, whatever the memory
// budget: a thumbnail of a larger image is not worth the time.
const maxPixels = 40_000_000

// badImageError is an original that can never be processed: not an image,
// too large, gone. Its message names the file.
type badImageError struct{ err error }

func (e *badImageError) Error() string { return e.err.Error() }
func (e *badImageError) Unwrap() error { return e.err }

func badImage(format string, args ...any) error {
	return &badImageError{err: fmt.Errorf(format, args...)}
}

// imageWork is a decoded original and the memory budget its work holds
// until release is called: the decoded image and, ahead, its thumbnails.
type imageWork struct {
	img     image.Image
	format  string // "jpeg" or "png"
	release func()
}

// loadOriginal reads and decodes one uploaded original, JPEG or PNG only,
// within the worker's image memory budget. It takes from the budget what
// reading the file allocates, reads it, works out from its header what
// decoding it and making its thumbnails will allocate (estimateCost), and
// refuses it when that is more than the whole budget. Otherwise it takes
// the rest of what it needs, or, when another job holds it, gives back
// what it holds, waits for the whole amount and reads the file again: a
// job never waits while holding budget. The budget is held until the
// caller releases the work.
func (c *Catalog) loadOriginal(ctx context.Context, ref ImageRef) (*imageWork, error) {
	size, err := c.originalSize(ctx, ref)
	if err != nil {
		return nil, err
	}
	held := fileCost(size)
	if held > c.cfg.ImageMemory {
		return nil, badImage("%s is a file of %s: reading it takes %s, more than the %s this worker allows for image work",
			ref.Name, byteSize(int64(size)), mib(held), mib(c.cfg.ImageMemory))
	}
	if err := c.budget.acquire(ctx, held); err != nil {
		return nil, fmt.Errorf("waiting for image memory: %w", err)
	}
	data, err := c.readOriginal(ctx, ref)
	if err != nil {
		c.budget.release(held)
		return nil, err
	}
	format, cost, err := c.checkOriginal(ref, data)
	if err != nil {
		c.budget.release(held)
		return nil, err
	}
	if total := cost.total(); !c.budget.tryAcquire(total - held) {
		c.budget.release(held)
		data = nil // not held while waiting: read again once the budget is ours
		if err := c.budget.acquire(ctx, total); err != nil {
			return nil, fmt.Errorf("waiting for image memory: %w", err)
		}
		if data, err = c.readOriginal(ctx, ref); err != nil {
			c.budget.release(total)
			return nil, err
		}
	}
	release := func() { c.budget.release(cost.total()) }
	img, _, err := image.Decode(bytes.NewReader(data))
	if err != nil {
		release()
		return nil, badImage("%s is a damaged %s image (%v)", ref.Name, format, err)
	}
	return &imageWork{img: img, format: format, release: release}, nil
}

// checkOriginal reads the header of an original and refuses what cannot
// be decoded within the budget: not a JPEG or PNG, more than maxPixels,
// or work that would allocate more than the whole budget. It returns the
// format and what the work will allocate.
func (c *Catalog) checkOriginal(ref ImageRef, data []byte) (string, imageCost, error) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil || (format != "jpeg" && format != "png") {
		if err == nil {
			err = fmt.Errorf("it is %s", format)
		}
		return "", imageCost{}, badImage("%s is not a JPEG or PNG image (%v)", ref.Name, err)
	}
	if cfg.Width < 1 || cfg.Height < 1 || int64(cfg.Width)*int64(cfg.Height) > maxPixels {
		return "", imageCost{}, badImage("%s is %d×%d pixels: at most %d megapixels are accepted", ref.Name, cfg.Width, cfg.Height, maxPixels/1_000_000)
	}
	cost := estimateCost(data, format, cfg, c.cfg.ThumbnailWidths)
	if cost.total() > c.cfg.ImageMemory {
		return "", imageCost{}, badImage("%s is %d×%d pixels (%s): decoding it takes %s and resizing it %s, %s in all, more than the %s this worker allows for image work",
			ref.Name, cfg.Width, cfg.Height, cost.kind, mib(cost.decode), mib(cost.resize), mib(cost.total()), mib(c.cfg.ImageMemory))
	}
	return format, cost, nil
}

// originalSize is the size in bytes of ref's original in the bucket.
func (c *Catalog) originalSize(ctx context.Context, ref ImageRef) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	info, err := c.images.GetInfo(ctx, ref.Object)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return 0, badImage("%s: the uploaded file is gone from the object store: %w", ref.Name, err)
	}
	if err != nil {
		return 0, err
	}
	return info.Size, nil
}

// readOriginal reads ref's original from the bucket.
func (c *Catalog) readOriginal(ctx context.Context, ref ImageRef) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	data, err := c.images.GetBytes(ctx, ref.Object)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, badImage("%s: the uploaded file is gone from the object store: %w", ref.Name, err)
	}
	return data, err
}

// mib writes n bytes in MiB, rounded up.
func mib(n int64) string { return fmt.Sprintf("%d MiB", (n+1<<20-1)>>20) }

// renderThumbnails makes the thumbnails of img for widths, the widest
// first from img and each other from the one before (a much smaller
// source for the scaler's buffer than the original), encodes each in
// format and hands it to put.
func renderThumbnails(img image.Image, format string, widths []int, put func(width int, thumb image.Image, data []byte) error) error {
	widths = slices.Sorted(slices.Values(widths))
	slices.Reverse(widths)
	orig, src := img.Bounds(), img
	for _, width := range widths {
		thumb := thumbnail(src, orig, width)
		data, err := encode(thumb, format)
		if err != nil {
			return err
		}
		if err := put(width, thumb, data); err != nil {
			return err
		}
		src = thumb
	}
	return nil
}

// thumbnail scales src to the thumbnail width pixels wide of an original
// of bounds orig (src is the original or a larger thumbnail of it),
// keeping the original's proportions. An image narrower than width keeps
// its size: thumbnails never enlarge.
func thumbnail(src image.Image, orig image.Rectangle, width int) image.Image {
	w, h := thumbSize(orig.Dx(), orig.Dy(), width)
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.CatmullRom.Scale(dst, dst.Bounds(), src, src.Bounds(), draw.Src, nil)
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
