package catalog_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
)

// FuzzUpload sends arbitrary multipart bodies, with an arbitrary
// boundary, to POST /items/{id}/images of a catalog running on real
// servers (NATS, SQLite, HTTP). The answer must never be a 5xx, and an
// upload refused with a 4xx must leave no object and no image behind.
// After an accepted upload the test removes what it stored, so every
// input starts from an empty item.
func FuzzUpload(f *testing.F) {
	for _, seed := range uploadSeeds() {
		f.Add(seed.body, seed.boundary)
	}
	a := startApp(f, false)
	c := ct.NewClient(f, a.url)
	c.Login("ann")
	lamp := c.CreateItem("Lamp", "")
	path := fmt.Sprintf("%s/items/%d/images", a.url, lamp.ID)
	f.Fuzz(func(t *testing.T, body []byte, boundary string) {
		if strings.ContainsFunc(boundary, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			t.Skip("no HTTP client can send this Content-Type")
		}
		req, err := http.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
		req.Header.Set("X-CSRF-Token", c.CSRF)
		resp, err := c.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode >= 500:
			t.Fatalf("%d %s", resp.StatusCode, answer)
		case resp.StatusCode == http.StatusAccepted:
			clearImages(t, a)
		default:
			if left := objects(t, a.js, ""); len(left) != 0 {
				t.Fatalf("refused with %d %s, yet objects are left: %v", resp.StatusCode, answer, left)
			}
			var n int
			if err := a.db.Get(context.Background(), &n, "SELECT COUNT(*) FROM item_images"); err != nil || n != 0 {
				t.Fatalf("refused with %d %s, yet %d image rows are left (%v)", resp.StatusCode, answer, n, err)
			}
		}
	})
}

// clearImages removes every image row and object, as if nothing had been
// uploaded.
func clearImages(t *testing.T, a *app) {
	t.Helper()
	ctx := context.Background()
	if _, err := a.db.Exec(ctx, "DELETE FROM item_images"); err != nil {
		t.Fatal(err)
	}
	obs, err := a.js.ObjectStore(ctx, "item_images")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range objects(t, a.js, "") {
		if err := obs.Delete(ctx, name); err != nil {
			t.Fatal(err)
		}
	}
}

type uploadSeed struct {
	body     []byte
	boundary string
}

// uploadSeeds are bodies a browser sends, and the ways they go wrong.
func uploadSeeds() []uploadSeed {
	good, ctype := ct.UploadBody(ct.File{Name: "a.png", Data: ct.PNG(8, 8)}, ct.File{Name: "b.jpg", Data: ct.JPEG(8, 8)})
	_, boundary, _ := strings.Cut(ctype, "boundary=")
	part := func(header, data string) string {
		return "--b\r\n" + header + "\r\n\r\n" + data + "\r\n"
	}
	file := `Content-Disposition: form-data; name="images"; filename="a.png"`
	return []uploadSeed{
		{good.Bytes(), boundary},
		{[]byte(part(`Content-Disposition: form-data; name="_token"`, "x") + part(file, "png") + "--b--\r\n"), "b"},
		{[]byte(part(`Content-Disposition: form-data; name="images"; filename="`+strings.Repeat("n", 300)+`"`, "x") + "--b--\r\n"), "b"},
		{[]byte(part(file+"\r\nX-Junk: "+strings.Repeat("j", 9000), "x") + "--b--\r\n"), "b"},
		{[]byte(part(file, "first") + part(`Content-Disposition: form-data; name="images"; filename="../../etc/passwd"`, "x") + "--b--\r\n"), "b"},
		{[]byte(part(file, "") + "--b--\r\n"), "b"},
		{[]byte("--b\r\nContent-Disp"), "b"},
		{[]byte(part(`Content-Disposition: form-data; name="pics"; filename="a.png"`, "x") + "--b--\r\n"), "b"},
		{nil, ""},
	}
}
