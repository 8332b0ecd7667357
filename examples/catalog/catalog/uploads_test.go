package catalog_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/examples/catalog/catalog"
	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/sessions"
)

// TestUploadsInFlightAreBounded: with MaxUploadsInFlight 2, five uploads
// whose bodies stall halfway: three are refused at once with 503,
// Retry-After and the setting's name, and the two being read are still
// read (they end only when their clients give up); then uploads are taken
// again. Each upload holds up to MaxUploadBytes in memory while it
// arrives: the bound keeps a few slow clients from holding the node's
// memory.
func TestUploadsInFlightAreBounded(t *testing.T) {
	const bound, sent = 2, 5
	a := startAppWith(t, readmodel.Config{Database: filepath.Join(t.TempDir(), "catalog.db")},
		catalog.Config{MaxUploadBytes: 1 << 20, MaxFiles: 3, MaxUploadsInFlight: bound}, false)
	c := ct.NewClient(t, a.url)
	c.Login("ann")
	item := c.CreateItem("lamp", "")
	path := fmt.Sprintf("/items/%d/images", item.ID)
	body, contentType := ct.UploadBody(ct.File{Name: "a.png", Data: ct.PNG(10, 10)})
	// A connection of its own each: a body that cannot be sent again is
	// never put on a kept-alive connection the server may have closed.
	slow := &http.Client{Jar: c.HTTP.Jar, Transport: &http.Transport{DisableKeepAlives: true}}
	stalled := make([]*io.PipeWriter, sent)
	ended := make(chan string, sent)
	for i := range stalled {
		pr, pw := io.Pipe()
		stalled[i] = pw
		req, err := http.NewRequest(http.MethodPost, a.url+path, pr)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("X-CSRF-Token", c.CSRF)
		go func() {
			resp, err := slow.Do(req)
			if err != nil {
				ended <- "error: " + err.Error()
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			ended <- fmt.Sprintf("%d Retry-After=%q %s", resp.StatusCode, resp.Header.Get("Retry-After"), b)
		}()
		go pw.Write(body.Bytes()[:body.Len()/2]) // half the body, then nothing
	}
	for range sent - bound {
		select {
		case got := <-ended:
			if !strings.HasPrefix(got, "503 Retry-After=\"1\"") || !strings.Contains(got, "JETFLEET_MAX_UPLOADS_IN_FLIGHT") {
				t.Fatalf("an upload past the bound: %s; want 503 with Retry-After naming the setting", got)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d uploads at once with a bound of %d: fewer than %d refused within 10 s", sent, bound, sent-bound)
		}
	}
	for _, pw := range stalled {
		pw.CloseWithError(fmt.Errorf("the client gave up"))
	}
	for range bound {
		if got := <-ended; !strings.HasPrefix(got, "error: ") {
			t.Errorf("an upload within the bound ended %q, want it read until its client gave up", got)
		}
	}
	// The server frees a slot when its handler sees the body end, a moment
	// after the client did.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		b, ctype := ct.UploadBody(ct.File{Name: "b.png", Data: ct.PNG(10, 10)})
		resp, answer := c.Do(http.MethodPost, path, b, http.Header{"Content-Type": {ctype}})
		if resp.StatusCode == http.StatusAccepted {
			return
		}
		if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("an upload after the stalled ones ended: %d %s, want 202", resp.StatusCode, answer)
		}
	}
}

// TestAFullDatabaseRefusesWritesWith507: anyone may log in and create
// items, so the read model's SQLite file is bounded (DB_SQLITE_MAX_MB):
// past it, a write is refused with 507 naming the setting, nothing half
// done, and what is stored stays readable.
func TestAFullDatabaseRefusesWritesWith507(t *testing.T) {
	a := startAppWith(t, readmodel.Config{Database: filepath.Join(t.TempDir(), "catalog.db"), SQLiteMaxBytes: 256 << 10},
		catalog.Config{MaxUploadBytes: 1 << 20, MaxFiles: 3}, false)
	c := ct.NewClient(t, a.url)
	c.Login("ann")
	first := c.CreateItem("lamp", "brass")
	desc := strings.Repeat("d", 1000)
	for i := range 1000 {
		b := fmt.Sprintf(`{"name": "item %d", "description": %q}`, i, desc)
		resp, answer := c.Do(http.MethodPost, "/items", strings.NewReader(b), http.Header{"Content-Type": {"application/json"}})
		if resp.StatusCode == http.StatusCreated {
			continue
		}
		if resp.StatusCode != http.StatusInsufficientStorage || !bytes.Contains(answer, []byte("DB_SQLITE_MAX_MB")) {
			t.Fatalf("item %d: %d %s; want 201 until the database is full, then 507 naming DB_SQLITE_MAX_MB", i, resp.StatusCode, answer)
		}
		t.Logf("%d items of 1 KB fit in 256 KiB; then %d %s", i, resp.StatusCode, answer)
		if it := c.Item(first.ID, http.StatusOK); it.Name != "lamp" {
			t.Fatalf("the first item after the database filled: %+v", it)
		}
		return
	}
	t.Fatal("1,000 items of 1 KB fit in a database bounded at 256 KiB")
}

// TestAnUploadWhoseDispatchIsNotAnsweredIsStillProcessed: with the node's
// outbox (catalog.Config.Outbox), an upload's processing job is written
// in the transaction that records the upload. Here the outbox cannot
// reach NATS (its connection is closed, as when the dispatch's answer is
// lost): the upload still gets 202, its job waits in the outbox instead
// of JOBS, and once a relay publishes it a worker processes the image.
// Before, a dispatch not acknowledged answered 503 "nothing was
// recorded" and marked the images failed, while the job might have been
// stored after all (an audit saw it run, and leak its original).
func TestAnUploadWhoseDispatchIsNotAnsweredIsStillProcessed(t *testing.T) {
	ctx := context.Background()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	if err := bus.ProvisionQueues(ctx, js, bus.Config{}, catalog.ImagesQueue, catalog.EmailsQueue); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, readmodel.Config{Database: filepath.Join(t.TempDir(), "catalog.db")})
	if _, err := readmodel.MigrateOutbox(ctx, db); err != nil {
		t.Fatal(err)
	}
	deadConn, deadJS := natstest.Connect(t, srv.ClientURL())
	deadD, err := bus.NewDispatcher(deadJS, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	deadConn.Close()
	lost, err := readmodel.NewOutbox(db, deadD, readmodel.OutboxConfig{PublishTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cat, url := serveCatalog(t, js, db, sessions.Config{}, catalog.Config{MaxUploadBytes: 1 << 20, MaxFiles: 3, Outbox: lost})
	runWorker(t, js, cat)
	c := ct.NewClient(t, url)
	c.Login("ann")
	item := c.CreateItem("lamp", "")
	if code, body := c.Upload(item.ID, ct.File{Name: "lamp.png", Data: ct.PNG(40, 30)}); code != http.StatusAccepted {
		t.Fatalf("upload: %d %s; want 202", code, body)
	}
	if pending, err := lost.Pending(ctx); err != nil || pending != 1 {
		t.Fatalf("outbox rows after the upload: %d, %v; want its job, not yet published", pending, err)
	}
	cons, err := js.Consumer(ctx, bus.JobsStream, bus.ConsumerName(catalog.ImagesQueue))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := cons.Info(ctx); err != nil || info.NumPending+uint64(info.NumAckPending)+uint64(info.Delivered.Stream) != 0 {
		t.Fatalf("queue %s: %+v, %v; the upload's job should wait in the outbox", catalog.ImagesQueue, info, err)
	}
	d, err := bus.NewDispatcher(js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	live, err := readmodel.NewOutbox(db, d, readmodel.OutboxConfig{Grace: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := live.RelayOnce(ctx); err != nil || n != 1 {
		t.Fatalf("relay: %d, %v; want the upload's job published", n, err)
	}
	it := c.WaitImages(item.ID, 30*time.Second, "lamp.png")
	if img, ok := ct.FindImage(it, "lamp.png"); !ok || img.Status != "ready" || img.Width != 40 {
		t.Fatalf("the image after the relay: %+v", it.Images)
	}
}

// TestReplacedUploadsLeaveNothingInTheImageBucket: uploading the same
// name again replaces the earlier version, whose objects are deleted; a
// refused upload's are too. What is deleted leaves no description behind
// in the bucket (nats.go's Delete keeps one, "deleted", for good): after
// five uploads of one name and a refused one, the bucket describes only
// the last version's original and thumbnails. Before, every replaced
// version left three descriptions, filling the bucket's bound until
// uploads got 507.
func TestReplacedUploadsLeaveNothingInTheImageBucket(t *testing.T) {
	a := startApp(t, true)
	c := ct.NewClient(t, a.url)
	c.Login("ann")
	item := c.CreateItem("lamp", "")
	for i := range 5 {
		if code, body := c.Upload(item.ID, ct.File{Name: "lamp.png", Data: ct.PNG(40+i, 30)}); code != http.StatusAccepted {
			t.Fatalf("upload %d: %d %s", i, code, body)
		}
		c.WaitImages(item.ID, 30*time.Second, "lamp.png")
	}
	if code, _ := c.Upload(item.ID, ct.File{Name: strings.Repeat("x", 300) + ".png", Data: ct.PNG(4, 4)}); code != http.StatusBadRequest {
		t.Fatalf("an upload with a 304-byte name: %d; want 400", code)
	}
	st, err := a.js.Stream(context.Background(), "OBJ_item_images")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter("$O.item_images.M.>"))
	if err != nil {
		t.Fatal(err)
	}
	if len(info.State.Subjects) != 3 { // the original and two thumbnails
		t.Fatalf("the bucket describes %d objects after five uploads of one name: %v; want the last version's 3", len(info.State.Subjects), info.State.Subjects)
	}
}
