package catalog

import (
	"bytes"
	"image"
	"runtime"

	"github.com/jetfleet/jetfleet/node"
)

// What the external tests call of the image path's internals.

// ImageWorkAllocs decodes data and renders its thumbnails (160 and 640
// wide) as a worker does, and returns the bytes that allocated (runtime
// TotalAlloc), the estimate of it (decoding and resizing; the file's read
// is not done here) and the estimate's description of the pixels. ok is
// false when data is not an image the catalog would decode, or its
// estimate is over limit (a worker would refuse it unread).
func ImageWorkAllocs(data []byte, limit int64) (allocated, estimated int64, kind string, ok bool) {
	widths := []int{160, 640}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil || (format != "png" && format != "jpeg") || cfg.Width < 1 || cfg.Height < 1 || int64(cfg.Width)*int64(cfg.Height) > maxPixels {
		return 0, 0, "", false
	}
	cost := estimateCost(data, format, cfg, widths)
	if cost.decode+cost.resize > limit {
		return 0, cost.decode + cost.resize, cost.kind, false
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	img, _, err := image.Decode(bytes.NewReader(data))
	if err == nil {
		renderThumbnails(img, format, widths, func(int, image.Image, []byte) error { return nil })
	}
	runtime.ReadMemStats(&after)
	return int64(after.TotalAlloc - before.TotalAlloc), cost.decode + cost.resize, cost.kind, true
}

// CheckOriginal is a worker's check of an original called name, with the
// default settings: nil, or why it refuses it.
func CheckOriginal(name string, data []byte) error {
	c := &Catalog{cfg: Config{}.withDefaults()}
	_, _, err := c.checkOriginal(ImageRef{Name: name}, data)
	return err
}

// NATSUnavailable is node.Unavailable, the catalog's rule for which errors answer 503.
var NATSUnavailable = node.Unavailable
