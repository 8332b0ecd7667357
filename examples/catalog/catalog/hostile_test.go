package catalog_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"io/fs"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/examples/catalog/catalog"
	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
	"github.com/jetfleet/jetfleet/examples/catalog/catalog/migrations"
	"github.com/jetfleet/jetfleet/internal/mariadbtest"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/sessions"
)

// objects lists the names in the image bucket that start with prefix.
func objects(t *testing.T, js jetstream.JetStream, prefix string) []string {
	t.Helper()
	ctx := context.Background()
	obs, err := js.ObjectStore(ctx, "item_images")
	if err != nil {
		t.Fatal(err)
	}
	infos, err := obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, info := range infos {
		if strings.HasPrefix(info.Name, prefix) {
			names = append(names, info.Name)
		}
	}
	return names
}

// waitJobsDone waits until JOBS holds no job: every job was acked or
// dead-lettered.
func waitJobsDone(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := js.Stream(context.Background(), bus.JobsStream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(context.Background())
		if err == nil && info.State.Msgs == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("JOBS still holds jobs after 30s: %+v (%v)", info.State, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkServedAsRecorded fetches an image's original and checks that what
// is served is what its type says: a body served as image/* decodes as
// that format.
func checkServedAsRecorded(t *testing.T, c *ct.Client, url string) *http.Response {
	t.Helper()
	resp, body := c.Do(http.MethodGet, url, nil, nil)
	ctype := resp.Header.Get("Content-Type")
	if resp.StatusCode == http.StatusOK && strings.HasPrefix(ctype, "image/") {
		_, format, err := image.DecodeConfig(bytes.NewReader(body))
		if err != nil || "image/"+format != ctype {
			t.Fatalf("GET %s serves %.40q as %s (decodes as %q: %v)", url, body, ctype, format, err)
		}
	}
	return resp
}

// TestReuploadNeverMixesVersions uploads a large PNG and, while the
// worker is making its thumbnails (it has read the original and stored
// the first thumbnail), a text file under the same name. Whatever order
// the two jobs end in, the image must end as the later upload says
// (failed: not an image) with nothing of the earlier one (no thumbnails,
// no size), and GET must never serve the text as a PNG.
func TestReuploadNeverMixesVersions(t *testing.T) {
	a := startApp(t, false)
	ctx := context.Background()
	c := ct.NewClient(t, a.url)
	c.Login("ann")
	lamp := c.CreateItem("Lamp", "")
	obs, err := a.js.ObjectStore(ctx, "item_images")
	if err != nil {
		t.Fatal(err)
	}
	watch, err := obs.Watch(ctx, jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Stop()
	if code, body := c.Upload(lamp.ID, ct.File{Name: "a.png", Data: ct.PNG(2400, 2400)}); code != http.StatusAccepted {
		t.Fatalf("upload the PNG: %d %s", code, body)
	}
	runWorker(t, a.js, a.cat)
	waitThumbnail(t, watch, "a.png", "/160")
	if code, body := c.Upload(lamp.ID, ct.File{Name: "a.png", Data: []byte("not a picture\n")}); code != http.StatusAccepted {
		t.Fatalf("upload the text: %d %s", code, body)
	}
	waitJobsDone(t, a.js)

	img, ok := ct.FindImage(c.Item(lamp.ID, http.StatusOK), "a.png")
	if !ok || img.Status != "failed" || !strings.Contains(img.Error, "a.png is not a JPEG or PNG image") || len(img.Thumbnails) != 0 || img.Width != 0 || img.ContentType != "" {
		t.Fatalf("after a text file replaced a PNG being processed, the image is %+v; want failed as not an image, with nothing of the PNG", img)
	}
	checkServedAsRecorded(t, c, img.URL)
	if resp, _ := c.Do(http.MethodGet, img.URL+"?size=160", nil, nil); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("the earlier upload's thumbnail is still served: %d", resp.StatusCode)
	}
	if left := objects(t, a.js, fmt.Sprintf("items/%d/a.png/", lamp.ID)); len(left) != 0 {
		t.Fatalf("the image failed, yet its objects are kept: %v", left)
	}
}

// waitThumbnail waits until the object store reports a stored object of
// image name whose object name ends in suffix.
func waitThumbnail(t *testing.T, watch jetstream.ObjectWatcher, name, suffix string) {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case info := <-watch.Updates():
			if info != nil && strings.Contains(info.Name, "/"+name+"/") && strings.HasSuffix(info.Name, suffix) {
				return
			}
		case <-timeout:
			t.Fatalf("no object of %s ending in %s within 30s", name, suffix)
		}
	}
}

// TestDeadImageJobMarksImagesFailed: an image job that times out on its
// only try is dead-lettered by the worker, not failed by the handler;
// its images must still end "failed" with the reason, and their
// originals must be removed.
func TestDeadImageJobMarksImagesFailed(t *testing.T) {
	a := startApp(t, false)
	ctx := context.Background()
	c := ct.NewClient(t, a.url)
	c.Login("ann")
	lamp := c.CreateItem("Lamp", "")
	if code, body := c.Upload(lamp.ID, ct.File{Name: "a.png", Data: ct.PNG(1000, 1000)}); code != http.StatusAccepted {
		t.Fatalf("upload: %d %s", code, body)
	}
	// The upload's job gets a 1 ms timeout and a single try, as a
	// producer could have sent it.
	s, err := a.js.Stream(ctx, bus.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	// Jobs are published on jobs.<queue>.<kind>.<id>.
	m, err := s.GetLastMsgForSubject(ctx, bus.JobSubject("high", "process-item-images")+".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Purge(ctx, jetstream.WithPurgeSubject(m.Subject)); err != nil {
		t.Fatal(err)
	}
	h := nats.Header{bus.HeaderTimeout: {"1ms"}, bus.HeaderTries: {"1"}}
	if _, err := a.js.PublishMsg(ctx, &nats.Msg{Subject: m.Subject, Header: h, Data: m.Data}); err != nil {
		t.Fatal(err)
	}
	runWorker(t, a.js, a.cat)
	img := waitStatus(t, c, lamp.ID, "a.png", "failed")
	waitJobsDone(t, a.js)
	in, err := bus.NewInspector(a.js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dead, err := in.FailedJobs(ctx, bus.FailedFilter{Queue: "high", Kind: "process-item-images"})
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead letters: %v %+v", err, dead)
	}
	if reason, _, _ := strings.Cut(dead[0].Error, "\n"); img.Error != "not processed: "+reason || !strings.Contains(reason, "timed out after 1ms") {
		t.Fatalf("the dead job's image says %q; the job was dead-lettered as %q", img.Error, dead[0].Error)
	}
	if left := objects(t, a.js, fmt.Sprintf("items/%d/a.png/", lamp.ID)); len(left) != 0 {
		t.Fatalf("the image failed, yet its objects are kept: %v", left)
	}
}

// waitStatus polls the item until its image name has status, at most 30 s.
func waitStatus(t *testing.T, c *ct.Client, itemID int64, name, status string) catalog.Image {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		img, _ := ct.FindImage(c.Item(itemID, http.StatusOK), name)
		if img.Status == status {
			return img
		}
		if time.Now().After(deadline) {
			t.Fatalf("image %s of item %d is %+v after 30s, want %s", name, itemID, img, status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestFailedUploadLeavesNoOriginal: an upload that the worker refuses
// (not an image) keeps its row, failed with the reason, but not its
// bytes.
func TestFailedUploadLeavesNoOriginal(t *testing.T) {
	a := startApp(t, true)
	c := ct.NewClient(t, a.url)
	c.Login("ann")
	lamp := c.CreateItem("Lamp", "")
	if code, body := c.Upload(lamp.ID, ct.File{Name: "notes.txt", Data: []byte("not a picture\n")}, ct.File{Name: "ok.png", Data: ct.PNG(300, 200)}); code != http.StatusAccepted {
		t.Fatalf("upload: %d %s", code, body)
	}
	c.WaitImages(lamp.ID, 30*time.Second, "notes.txt", "ok.png")
	waitJobsDone(t, a.js)
	if left := objects(t, a.js, fmt.Sprintf("items/%d/notes.txt/", lamp.ID)); len(left) != 0 {
		t.Fatalf("notes.txt failed, yet its objects are kept: %v", left)
	}
	if kept := objects(t, a.js, fmt.Sprintf("items/%d/ok.png/", lamp.ID)); len(kept) != 3 {
		t.Fatalf("ok.png is stored as %v, want the original and two thumbnails", kept)
	}
	img, _ := ct.FindImage(c.Item(lamp.ID, http.StatusOK), "notes.txt")
	if resp := checkServedAsRecorded(t, c, img.URL); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET the failed upload's original: %d, want 404", resp.StatusCode)
	}
}

// TestPagesSendSecurityHeaders: every HTML response of the catalog (the
// pages, a page's error, the API's error for a browser) forbids framing,
// sniffing and referrers to other sites, and carries a Content-Security-
// Policy that allows only the page's own nonce for its inline style.
func TestPagesSendSecurityHeaders(t *testing.T) {
	a := startApp(t, false)
	c := ct.NewClient(t, a.url)
	browser := http.Header{"Accept": {"text/html"}}
	check := func(what string, resp *http.Response, body []byte) {
		t.Helper()
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("%s: Content-Security-Policy %q lacks %q", what, csp, want)
			}
		}
		if h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "same-origin" {
			t.Errorf("%s: X-Frame-Options %q, X-Content-Type-Options %q, Referrer-Policy %q", what, h.Get("X-Frame-Options"), h.Get("X-Content-Type-Options"), h.Get("Referrer-Policy"))
		}
		if strings.Contains(string(body), "<style") {
			i := strings.Index(string(body), "<style nonce=\"")
			if i < 0 {
				t.Fatalf("%s: an inline style without a nonce:\n%s", what, body)
			}
			nonce, _, _ := strings.Cut(string(body[i+len("<style nonce=\""):]), "\"")
			if len(nonce) < 16 || !strings.Contains(csp, "style-src 'nonce-"+nonce+"'") {
				t.Errorf("%s: style nonce %q is not the policy's: %q", what, nonce, csp)
			}
		}
	}
	resp, body := c.Do(http.MethodGet, "/", nil, browser)
	check("GET / (log in)", resp, body)
	c.Login("ann")
	resp, body = c.Do(http.MethodGet, "/", nil, browser)
	check("GET / (items)", resp, body)
	if again, _ := c.Do(http.MethodGet, "/", nil, browser); again.Header.Get("Content-Security-Policy") == resp.Header.Get("Content-Security-Policy") {
		t.Errorf("two page views have the same nonce: %s", resp.Header.Get("Content-Security-Policy"))
	}
	lamp := c.CreateItem("Lamp", "")
	resp, body = c.Do(http.MethodGet, fmt.Sprintf("/view/items/%d", lamp.ID), nil, browser)
	check("the item page", resp, body)
	resp, body = c.Do(http.MethodGet, "/view/items/999", nil, browser)
	check("a missing item's page", resp, body)
	resp, body = c.Do(http.MethodGet, "/items/abc", nil, browser)
	check("an API error for a browser", resp, body)
	resp, _ = c.Do(http.MethodGet, "/items", nil, nil)
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Errorf("GET /items (JSON): %v", resp.Header)
	}
}

// TestUploadWithA2MBFileName: a file name of 2 MB, within the upload
// limit, is refused with a 400 that says why, and the file sent before it
// in the same request is not left behind.
func TestUploadWithA2MBFileName(t *testing.T) {
	a := startAppWith(t, readmodel.Config{Database: filepath.Join(t.TempDir(), "catalog.db")}, catalog.Config{MaxUploadBytes: 8 << 20}, false)
	c := ct.NewClient(t, a.url)
	c.Login("ann")
	lamp := c.CreateItem("Lamp", "")
	name := strings.Repeat("n", 2<<20) + ".png"
	code, body := c.Upload(lamp.ID, ct.File{Name: "first.png", Data: ct.PNG(10, 10)}, ct.File{Name: name, Data: ct.PNG(10, 10)})
	if code != http.StatusBadRequest || !strings.Contains(ct.ErrorOf(body), "file name is 2097156 bytes long: at most 255 are accepted") {
		t.Fatalf("upload with a 2 MB file name: %d %.200s", code, body)
	}
	if left := objects(t, a.js, ""); len(left) != 0 {
		t.Fatalf("the refused upload left objects behind: %v", left)
	}
	if it := c.Item(lamp.ID, http.StatusOK); len(it.Images) != 0 {
		t.Fatalf("the refused upload left images: %+v", it.Images)
	}
}

// beforeVersions is the catalog's schema as it was before uploads had
// versions (migrations 0001 and 0002).
func beforeVersions(t *testing.T) fstest.MapFS {
	t.Helper()
	old := fstest.MapFS{}
	for _, dialect := range []string{"sqlite", "mysql"} {
		for _, name := range []string{"0001_init.sql", "0002_image_errors.sql"} {
			data, err := fs.ReadFile(migrations.FS, dialect+"/"+name)
			if err != nil {
				t.Fatal(err)
			}
			old[dialect+"/"+name] = &fstest.MapFile{Data: data}
		}
	}
	return old
}

// TestUploadsFromBeforeVersionsSurviveTheUpgrade: a database that holds an
// upload made before versions (its row, its object under the old layout,
// its job still queued) is migrated; the old job then makes the
// thumbnails, GET serves the image, and a new upload of the same name
// replaces it and deletes the old objects.
func TestUploadsFromBeforeVersionsSurviveTheUpgrade(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		legacyUpgrade(t, readmodel.Config{Database: filepath.Join(t.TempDir(), "catalog.db")})
	})
	t.Run("mariadb", func(t *testing.T) {
		if err := mariadbtest.Available(); err != nil {
			t.Skip(err)
		}
		p := mariadbtest.Start(t)
		legacyUpgrade(t, readmodel.Config{Driver: readmodel.DriverMySQL, WriteHost: p.Primary.Addr(),
			Database: p.NewDatabase(t), Username: mariadbtest.AppUser, Password: p.Password})
	})
}

func legacyUpgrade(t *testing.T, dbCfg readmodel.Config) {
	ctx := context.Background()
	db, err := readmodel.Open(ctx, dbCfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := readmodel.Migrate(ctx, db, beforeVersions(t)); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		"INSERT INTO users (id, name) VALUES (1, 'ann')",
		"INSERT INTO items (id, user_id, name, description) VALUES (1, 1, 'Lamp', '')",
		"INSERT INTO item_images (item_id, name, size, object_name) VALUES (1, 'old.png', 0, 'items/1/old.png/0')",
	} {
		if _, err := db.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	applied, err := readmodel.Migrate(ctx, db, migrations.FS)
	if err != nil || len(applied) != 1 {
		t.Fatalf("upgrade applied %v (%v), want the versions migration", applied, err)
	}

	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	if err := bus.ProvisionQueues(ctx, js, bus.Config{}, catalog.ImagesQueue, catalog.EmailsQueue); err != nil {
		t.Fatal(err)
	}
	cat, url := serveCatalog(t, js, db, sessions.Config{}, catalog.Config{})
	obs, err := js.ObjectStore(ctx, "item_images")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(ctx, "items/1/old.png/0", ct.PNG(800, 600)); err != nil {
		t.Fatal(err)
	}
	// The job as the catalog sent it before versions.
	if _, err := js.Publish(ctx, bus.JobSubject("high", "process-item-images"), []byte(`{"item_id":1,"images":[{"name":"old.png","object":"items/1/old.png/0"}]}`)); err != nil {
		t.Fatal(err)
	}
	runWorker(t, js, cat)
	c := ct.NewClient(t, url)
	c.Login("ann")
	it := c.WaitImages(1, 30*time.Second, "old.png")
	if img, _ := ct.FindImage(it, "old.png"); img.Status != "ready" || img.Version != "" || len(img.Thumbnails) != 2 {
		t.Fatalf("the upload from before versions: %+v", img)
	}
	checkServedAsRecorded(t, c, "/items/1/images/old.png")
	if got := objects(t, js, "items/1/old.png/"); strings.Join(slices.Sorted(slices.Values(got)), " ") != "items/1/old.png/0 items/1/old.png/160 items/1/old.png/640" {
		t.Fatalf("objects of the old upload: %v", got)
	}

	if code, body := c.Upload(1, ct.File{Name: "old.png", Data: ct.JPEG(300, 200)}); code != http.StatusAccepted {
		t.Fatalf("upload again: %d %s", code, body)
	}
	it = c.WaitImages(1, 30*time.Second, "old.png")
	img, _ := ct.FindImage(it, "old.png")
	if img.Status != "ready" || img.Version == "" || img.ContentType != "image/jpeg" || img.Width != 300 {
		t.Fatalf("the new upload: %+v", img)
	}
	waitJobsDone(t, js)
	for _, name := range objects(t, js, "items/1/old.png/") {
		if !strings.HasPrefix(name, "items/1/old.png/"+img.Version+"/") {
			t.Errorf("object %s of the replaced upload is left", name)
		}
	}
}
