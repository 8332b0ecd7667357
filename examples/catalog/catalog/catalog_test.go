package catalog_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/examples/catalog/catalog"
	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
	"github.com/jetfleet/jetfleet/internal/mariadbtest"
	"github.com/jetfleet/jetfleet/readmodel"
)

// TestCatalogFlow walks the whole app in one process on real servers:
// first login queues the welcome email that the worker writes to the
// outbox; items are created and listed a page at a time; a PNG and a JPEG
// get 160 and 640 px thumbnails, and the README tour's picture the sizes
// the tour shows; a text file fails for good with a reason
// naming it, both on the item and in DLQ; the HTML page shows the item.
func TestCatalogFlow(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { catalogFlow(t, startApp(t, true)) })
	t.Run("mariadb", func(t *testing.T) {
		if err := mariadbtest.Available(); err != nil {
			t.Skip(err)
		}
		p := mariadbtest.Start(t)
		catalogFlow(t, startAppOn(t, readmodel.Config{Driver: readmodel.DriverMySQL, WriteHost: p.Primary.Addr(),
			ReadHosts: []string{p.Replica.Addr()}, Database: p.NewDatabase(t), Username: mariadbtest.AppUser, Password: p.Password}, true))
	})
}

func catalogFlow(t *testing.T, a *app) {
	c := ct.NewClient(t, a.url)
	first := c.Login("ann")
	if !first.Created || first.WelcomeJob != "welcome-1" {
		t.Fatalf("first login: %+v, want created with job welcome-1", first)
	}
	if again := c.Login("ann"); again.Created || again.User.ID != first.User.ID {
		t.Fatalf("second login: %+v, want the same user, not created", again)
	}
	waitOutbox(t, c, "Welcome to the jetfleet catalog, ann!")

	lamp := c.CreateItem("Lamp", "brass")
	c.CreateItem("Chair", "")
	var page struct {
		Items []struct{ Name string } `json:"items"`
		Next  string                  `json:"next"`
	}
	c.JSON(http.MethodGet, "/items?limit=1", nil, http.StatusOK, &page)
	if len(page.Items) != 1 || page.Items[0].Name != "Chair" || page.Next == "" {
		t.Fatalf("first page: %+v", page)
	}
	c.JSON(http.MethodGet, page.Next, nil, http.StatusOK, &page)
	if len(page.Items) != 1 || page.Items[0].Name != "Lamp" {
		t.Fatalf("second page: %+v", page)
	}

	code, body := c.Upload(lamp.ID, ct.File{Name: "photo.png", Data: ct.PNG(800, 600)}, ct.File{Name: "wide photo.jpg", Data: ct.JPEG(1000, 500)})
	if code != http.StatusAccepted || !strings.Contains(string(body), `"job_id"`) {
		t.Fatalf("upload: %d %s", code, body)
	}
	it := c.WaitImages(lamp.ID, 30*time.Second, "photo.png", "wide-photo.jpg")
	checkThumbnails(t, c, it.ID, "photo.png", 800, map[int]int{160: 120, 640: 480})
	checkThumbnails(t, c, it.ID, "wide-photo.jpg", 1000, map[int]int{160: 80, 640: 320})

	tourPicture(t, c, lamp.ID)

	code, body = c.Upload(lamp.ID, ct.File{Name: "notes.txt", Data: []byte("not a picture\n")})
	if code != http.StatusAccepted {
		t.Fatalf("upload notes.txt: %d %s", code, body)
	}
	it = c.WaitImages(lamp.ID, 30*time.Second, "notes.txt")
	if img, _ := ct.FindImage(it, "notes.txt"); img.Status != "failed" || !strings.Contains(img.Error, "notes.txt is not a JPEG or PNG image") {
		t.Fatalf("notes.txt: %+v", img)
	}
	waitDeadLetter(t, a, "notes.txt is not a JPEG or PNG image")

	resp, html := c.Do(http.MethodGet, fmt.Sprintf("/view/items/%d", lamp.ID), nil, http.Header{"Accept": {"text/html"}})
	for _, want := range []string{"<h2>Lamp</h2>", "/items/1/images/photo.png?size=160", "notes.txt is not a JPEG or PNG image"} {
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(html), want) {
			t.Fatalf("item page (%d) lacks %q:\n%s", resp.StatusCode, want, html)
		}
	}
}

// checkThumbnails fetches the original and each thumbnail and checks their
// decoded widths and the heights the API reports.
func checkThumbnails(t *testing.T, c *ct.Client, itemID int64, name string, width int, heights map[int]int) {
	t.Helper()
	it := c.Item(itemID, http.StatusOK)
	img, _ := ct.FindImage(it, name)
	if img.Status != "ready" || img.Width != width || len(img.Thumbnails) != len(heights) {
		t.Fatalf("%s: %+v", name, img)
	}
	for _, th := range img.Thumbnails {
		resp, data := c.Do(http.MethodGet, th.URL, nil, nil)
		if resp.StatusCode != http.StatusOK || ct.DecodedWidth(t, data) != th.Size || th.Height != heights[th.Size] {
			t.Fatalf("%s thumbnail %d: status %d, %+v", name, th.Size, resp.StatusCode, th)
		}
	}
	resp, data := c.Do(http.MethodGet, img.URL, nil, nil)
	if resp.StatusCode != http.StatusOK || ct.DecodedWidth(t, data) != width || resp.Header.Get("Content-Type") != img.ContentType {
		t.Fatalf("%s original: status %d, type %s", name, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// tourPicture uploads the README tour's picture, examples/catalog/lamp.png,
// and checks what the tour shows of it: 198×200, a 160-px thumbnail 162
// high, and the 640 one at the picture's own size (never enlarged).
func tourPicture(t *testing.T, c *ct.Client, itemID int64) {
	t.Helper()
	data, err := os.ReadFile("../lamp.png")
	if err != nil {
		t.Fatal(err)
	}
	if code, body := c.Upload(itemID, ct.File{Name: "lamp.png", Data: data}); code != http.StatusAccepted {
		t.Fatalf("upload lamp.png: %d %s", code, body)
	}
	img, _ := ct.FindImage(c.WaitImages(itemID, 30*time.Second, "lamp.png"), "lamp.png")
	want := []catalog.Thumbnail{{Size: 160, Width: 160, Height: 162}, {Size: 640, Width: 198, Height: 200}}
	if img.Status != "ready" || img.Width != 198 || img.Height != 200 || img.ContentType != "image/png" || len(img.Thumbnails) != len(want) {
		t.Fatalf("lamp.png: %+v, want ready, 198×200 image/png with thumbnails %+v", img, want)
	}
	for i, th := range img.Thumbnails {
		if th.Size != want[i].Size || th.Width != want[i].Width || th.Height != want[i].Height {
			t.Errorf("lamp.png thumbnail %d: %+v, want %+v", i, th, want[i])
		}
		resp, data := c.Do(http.MethodGet, th.URL, nil, nil)
		if resp.StatusCode != http.StatusOK || ct.DecodedWidth(t, data) != want[i].Width {
			t.Errorf("lamp.png thumbnail %d: status %d, decoded width %d, want %d", th.Size, resp.StatusCode, ct.DecodedWidth(t, data), want[i].Width)
		}
	}
}

func waitOutbox(t *testing.T, c *ct.Client, want string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		body := c.JSON(http.MethodGet, "/me", nil, http.StatusOK, nil)
		if strings.Contains(string(body), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox still lacks %q: %s", want, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitDeadLetter(t *testing.T, a *app, reason string) {
	t.Helper()
	in, err := bus.NewInspector(a.js, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		jobs, err := in.FailedJobs(context.Background(), bus.FailedFilter{Queue: "high", Kind: "process-item-images"})
		if err == nil && len(jobs) == 1 && strings.Contains(jobs[0].Error, reason) && jobs[0].Attempts == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter saying %q after 1 attempt: %v %+v", reason, err, jobs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
