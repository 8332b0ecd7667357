package catalog_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/examples/catalog/catalog"
	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
	"github.com/jetfleet/jetfleet/readmodel"
)

// TestUploadsInFlightAreBounded: with MaxUploadsInFlight 2, two uploads
// whose bodies stall hold both slots, and a third is refused at once with
// 503, Retry-After and the setting's name; once the stalled ones end,
// uploads are taken again. Each upload holds up to MaxUploadBytes in
// memory while it arrives: the bound is what keeps a few slow clients
// from holding the node's memory.
func TestUploadsInFlightAreBounded(t *testing.T) {
	a := startAppWith(t, readmodel.Config{Database: filepath.Join(t.TempDir(), "catalog.db")},
		catalog.Config{MaxUploadBytes: 1 << 20, MaxFiles: 3, MaxUploadsInFlight: 2}, false)
	c := ct.NewClient(t, a.url)
	c.Login("ann")
	item := c.CreateItem("lamp", "")
	path := fmt.Sprintf("%s/items/%d/images", a.url, item.ID)
	body, contentType := ct.UploadBody(ct.File{Name: "a.png", Data: ct.PNG(10, 10)})
	stalled := make([]*io.PipeWriter, 2)
	done := make(chan error, len(stalled))
	for i := range stalled {
		pr, pw := io.Pipe()
		stalled[i] = pw
		req, err := http.NewRequest(http.MethodPost, path, pr)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", contentType)
		req.Header.Set("X-CSRF-Token", c.CSRF)
		go func() {
			resp, err := c.HTTP.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		go pw.Write(body.Bytes()[:body.Len()/2]) // half the body, then nothing
	}
	var answer []byte
	upload := func() *http.Response {
		b, ct := ct.UploadBody(ct.File{Name: "b.png", Data: ct.PNG(10, 10)})
		resp, body := c.Do(http.MethodPost, path[len(a.url):], b, http.Header{"Content-Type": {ct}})
		answer = body
		return resp
	}
	refused := untilAnswered(t, upload, http.StatusServiceUnavailable)
	if refused.Header.Get("Retry-After") == "" || !bytes.Contains(answer, []byte("JETFLEET_MAX_UPLOADS_IN_FLIGHT")) {
		t.Errorf("the refused upload: Retry-After %q, body %s; want a Retry-After and the setting's name", refused.Header.Get("Retry-After"), answer)
	}
	for _, pw := range stalled {
		pw.CloseWithError(fmt.Errorf("the client gave up"))
	}
	for range stalled {
		<-done
	}
	untilAnswered(t, upload, http.StatusAccepted)
}

// untilAnswered sends requests until one is answered with want (at most 10 s).
func untilAnswered(t *testing.T, send func() *http.Response, want int) *http.Response {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := send()
		if resp.StatusCode == want {
			return resp
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer %d within 10 s; the last was %d", want, resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
