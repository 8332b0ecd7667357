package catalog_test

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/png"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/examples/catalog/catalog"
	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/readmodel"
)

// noise is n bytes that do not compress.
func noise(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// noisePNG is a w×h PNG of noise: it and its thumbnails do not compress.
func noisePNG(w, h int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	copy(img.Pix, noise(len(img.Pix), 7))
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		panic(err) // encoding to memory cannot fail
	}
	return buf.Bytes()
}

// streamInfo is the info of the image bucket's stream.
func streamInfo(t *testing.T, js jetstream.JetStream) *jetstream.StreamInfo {
	t.Helper()
	st, err := js.Stream(context.Background(), "OBJ_item_images")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestUploadsCannotFillTheImageStore: anyone can log in and upload, so
// the image bucket is bounded. Uploads past the bound are refused with 507
// and a message naming the setting, leave nothing behind, and the images
// already there stay.
func TestUploadsCannotFillTheImageStore(t *testing.T) {
	const bound = 1 << 20
	a := startAppWith(t, readmodel.Config{Database: filepath.Join(t.TempDir(), "catalog.db")},
		catalog.Config{MaxUploadBytes: 1 << 20, ImageStoreBytes: bound}, false)
	c := ct.NewClient(t, a.url)
	c.Login("ann")
	lamp := c.CreateItem("Lamp", "")
	stored := 0
	var refused []byte
	for i := range 10 {
		code, body := c.Upload(lamp.ID, ct.File{Name: fmt.Sprintf("photo-%d.png", i), Data: noise(300<<10, uint64(i))})
		if code == http.StatusInsufficientStorage {
			refused = body
			break
		}
		if code >= 300 {
			t.Fatalf("upload %d: %d %s", i+1, code, body)
		}
		stored++
	}
	if refused == nil {
		t.Fatalf("%d uploads of 300 KiB each into a bucket bounded at 1 MiB: none refused", stored)
	}
	if msg := ct.ErrorOf(refused); !strings.Contains(msg, "the image store is full") || !strings.Contains(msg, "JETFLEET_IMAGE_STORE_MB") {
		t.Fatalf("refused upload: %s; want a message saying the store is full, naming JETFLEET_IMAGE_STORE_MB", refused)
	}
	if stored != 3 {
		t.Fatalf("%d uploads of 300 KiB stored before the refusal; want 3 in 1 MiB", stored)
	}
	if info := streamInfo(t, a.js); info.State.Bytes > bound {
		t.Fatalf("the bucket holds %d bytes; its bound is %d", info.State.Bytes, bound)
	}
	if left := objects(t, a.js, ""); len(left) != stored {
		t.Fatalf("the bucket holds %d objects after %d uploads were stored and one refused: %v", len(left), stored, left)
	}
	it := c.Item(lamp.ID, http.StatusOK)
	if len(it.Images) != stored {
		t.Fatalf("item images: %+v; want the %d stored", it.Images, stored)
	}
}

// TestNewBoundsAnExistingImageBucket: a bucket made by a version without a
// bound gets the configured one.
func TestNewBoundsAnExistingImageBucket(t *testing.T) {
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.Start(t).ClientURL())
	if _, err := js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: "item_images"}); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, readmodel.Config{Database: filepath.Join(t.TempDir(), "catalog.db")})
	if _, err := catalog.New(ctx, js, db, catalog.Config{ImageStoreBytes: 5 << 20}); err != nil {
		t.Fatal(err)
	}
	if info := streamInfo(t, js); info.Config.MaxBytes != 5<<20 || info.Config.AllowDirect {
		t.Fatalf("the existing bucket: MaxBytes %d, direct gets %v; want %d and off", info.Config.MaxBytes, info.Config.AllowDirect, 5<<20)
	}
}

// TestImageStoreBoundTheServerCannotReserve: a bound larger than the
// server's storage is refused when New creates the bucket, naming the
// setting.
func TestImageStoreBoundTheServerCannotReserve(t *testing.T) {
	ctx := context.Background()
	_, js := natstest.Connect(t, natstest.Start(t).ClientURL())
	db := openDB(t, readmodel.Config{Database: filepath.Join(t.TempDir(), "catalog.db")})
	_, err := catalog.New(ctx, js, db, catalog.Config{ImageStoreBytes: 1 << 50})
	if err == nil || !strings.Contains(err.Error(), "JETFLEET_IMAGE_STORE_MB") {
		t.Fatalf("a 1 PiB bound: %v; want an error naming JETFLEET_IMAGE_STORE_MB", err)
	}
}

// TestThumbnailsThatFindNoRoomFailTheJobSayingSo: an upload accepted into
// a bucket that then fills up (here, with one large object) leaves its
// thumbnails no room. The job fails saying the store is full, and, its
// tries used up, marks the image failed with that reason and deletes its
// objects, which frees the room they took.
func TestThumbnailsThatFindNoRoomFailTheJobSayingSo(t *testing.T) {
	const bound = 1 << 20
	ctx := context.Background()
	a := startAppWith(t, readmodel.Config{Database: filepath.Join(t.TempDir(), "catalog.db")},
		catalog.Config{MaxUploadBytes: 1 << 20, ImageStoreBytes: bound}, false)
	c := ct.NewClient(t, a.url)
	c.Login("ann")
	lamp := c.CreateItem("Lamp", "")
	if code, body := c.Upload(lamp.ID, ct.File{Name: "a.png", Data: noisePNG(200, 200)}); code != http.StatusAccepted {
		t.Fatalf("upload: %d %s", code, body)
	}
	// Room for 32 KiB more: not for a 160-pixel thumbnail of noise.
	obs, err := a.js.ObjectStore(ctx, "item_images")
	must(t, err)
	filler := bound - int(streamInfo(t, a.js).State.Bytes) - 32<<10 - 200 // the filler's own headers
	_, err = obs.PutBytes(ctx, "filler", noise(filler, 1))
	must(t, err)

	// One try, so the first failure is the last.
	s, err := a.js.Stream(ctx, bus.JobsStream)
	must(t, err)
	m, err := s.GetLastMsgForSubject(ctx, bus.JobSubject("high", "process-item-images")+".>")
	must(t, err)
	must(t, s.Purge(ctx, jetstream.WithPurgeSubject(m.Subject)))
	_, err = a.js.PublishMsg(ctx, &nats.Msg{Subject: m.Subject, Header: nats.Header{bus.HeaderTries: {"1"}}, Data: m.Data})
	must(t, err)
	runWorker(t, a.js, a.cat)

	img := waitStatus(t, c, lamp.ID, "a.png", "failed")
	if !strings.Contains(img.Error, "the image store is full") || !strings.Contains(img.Error, "JETFLEET_IMAGE_STORE_MB") {
		t.Fatalf("the image failed with %q; want the reason: the image store is full, naming JETFLEET_IMAGE_STORE_MB", img.Error)
	}
	if left := objects(t, a.js, fmt.Sprintf("items/%d/", lamp.ID)); len(left) != 0 {
		t.Fatalf("the failed image's objects are kept: %v", left)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
