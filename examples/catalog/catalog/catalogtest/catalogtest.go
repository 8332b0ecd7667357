// Package catalogtest drives the catalog's HTTP API from tests, the way a
// user's program would: a real HTTP client with a cookie jar that keeps the
// session cookie and the CSRF token, plus real PNG and JPEG files made with
// the standard library. Nothing here is a mock: point it at any running
// catalog (httptest, `jetfleet serve`, `jetfleet up`).
package catalogtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/examples/catalog/catalog"
)

// Client is one user's browser-like client. Base may be changed between
// requests to talk to another node with the same session: the cookie jar
// keys cookies by host, not port.
type Client struct {
	T    testing.TB
	Base string
	HTTP *http.Client
	// CSRF is the token from the last login (sent as X-CSRF-Token).
	CSRF string
}

// NewClient returns a client of the catalog at base ("http://127.0.0.1:8080").
func NewClient(t testing.TB, base string) *Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &Client{T: t, Base: base, HTTP: &http.Client{
		Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Do sends a request and returns the response with its whole body read.
// The CSRF token goes along on unsafe methods unless header sets one.
func (c *Client) Do(method, path string, body io.Reader, header http.Header) (*http.Response, []byte) {
	c.T.Helper()
	req, err := http.NewRequest(method, c.Base+path, body)
	if err != nil {
		c.T.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if method != http.MethodGet && c.CSRF != "" && req.Header.Get("X-CSRF-Token") == "" {
		req.Header.Set("X-CSRF-Token", c.CSRF)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		c.T.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.T.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return resp, b
}

// JSON sends v (nil: no body) as JSON, checks the status and decodes the
// response into out (when not nil).
func (c *Client) JSON(method, path string, v any, want int, out any) []byte {
	c.T.Helper()
	var body io.Reader
	h := http.Header{}
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			c.T.Fatal(err)
		}
		body = bytes.NewReader(b)
		h.Set("Content-Type", "application/json")
	}
	resp, b := c.Do(method, path, body, h)
	if resp.StatusCode != want {
		c.T.Fatalf("%s %s%s: status %d, want %d; body: %s", method, c.Base, path, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.T.Fatalf("%s %s: %v in %s", method, path, err, b)
		}
	}
	return b
}

// LoginResponse is the body of POST /login.
type LoginResponse struct {
	User       catalog.User `json:"user"`
	Created    bool         `json:"created"`
	WelcomeJob string       `json:"welcome_job"`
	CSRFToken  string       `json:"csrf_token"`
}

// Login logs in as name and keeps the CSRF token.
func (c *Client) Login(name string) LoginResponse {
	c.T.Helper()
	var r LoginResponse
	c.JSON(http.MethodPost, "/login", map[string]string{"name": name}, http.StatusOK, &r)
	if r.CSRFToken == "" {
		c.T.Fatalf("login as %s returned no CSRF token", name)
	}
	c.CSRF = r.CSRFToken
	return r
}

// CreateItem creates an item and returns it.
func (c *Client) CreateItem(name, description string) catalog.Item {
	c.T.Helper()
	var it catalog.Item
	c.JSON(http.MethodPost, "/items", map[string]string{"name": name, "description": description}, http.StatusCreated, &it)
	return it
}

// Item reads an item, checking the status.
func (c *Client) Item(id int64, want int) catalog.Item {
	c.T.Helper()
	var it catalog.Item
	c.JSON(http.MethodGet, fmt.Sprintf("/items/%d", id), nil, want, &it)
	return it
}

// File is one file of an upload.
type File struct {
	Name string
	Data []byte
}

// UploadBody builds a multipart body with files in the field "images" and
// returns it with its Content-Type.
func UploadBody(files ...File) (*bytes.Buffer, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range files {
		w, _ := mw.CreateFormFile("images", f.Name)
		w.Write(f.Data)
	}
	mw.Close()
	return &buf, mw.FormDataContentType()
}

// Upload posts files to the item's images and returns the status and body.
func (c *Client) Upload(itemID int64, files ...File) (int, []byte) {
	c.T.Helper()
	body, ct := UploadBody(files...)
	resp, b := c.Do(http.MethodPost, fmt.Sprintf("/items/%d/images", itemID), body, http.Header{"Content-Type": {ct}})
	return resp.StatusCode, b
}

// WaitImages polls the item until every image of names has left
// "processing", and returns the item.
func (c *Client) WaitImages(itemID int64, timeout time.Duration, names ...string) catalog.Item {
	c.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		it := c.Item(itemID, http.StatusOK)
		if done(it, names) {
			return it
		}
		if time.Now().After(deadline) {
			c.T.Fatalf("images %v of item %d not processed within %s: %+v", names, itemID, timeout, it.Images)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func done(it catalog.Item, names []string) bool {
	for _, n := range names {
		img, ok := FindImage(it, n)
		if !ok || img.Status == "processing" {
			return false
		}
	}
	return true
}

// FindImage returns the item's image called name.
func FindImage(it catalog.Item, name string) (catalog.Image, bool) {
	for _, img := range it.Images {
		if img.Name == name {
			return img, true
		}
	}
	return catalog.Image{}, false
}

// PNG returns a w×h PNG with a gradient.
func PNG(w, h int) []byte {
	var buf bytes.Buffer
	if err := png.Encode(&buf, gradient(w, h)); err != nil {
		panic(err) // encoding to memory cannot fail
	}
	return buf.Bytes()
}

// JPEG returns a w×h JPEG with a gradient.
func JPEG(w, h int) []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, gradient(w, h), nil); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func gradient(w, h int) image.Image {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(255 * x / w), uint8(255 * y / h), 128, 255})
		}
	}
	return img
}

// DecodedWidth decodes an image and returns its width, failing the test
// when it is not an image.
func DecodedWidth(t testing.TB, data []byte) int {
	t.Helper()
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("not an image (%v): %.80q", err, data)
	}
	return cfg.Width
}

// ErrorOf returns the "error" message of a JSON error body, or "".
func ErrorOf(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	return strings.TrimSpace(e.Error)
}
