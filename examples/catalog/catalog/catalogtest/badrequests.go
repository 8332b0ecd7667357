package catalogtest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// BadRequest is one request that must be refused with Status and a
// message containing Message.
type BadRequest struct {
	Name         string
	Method, Path string
	// Body returns the body and its Content-Type; nil: no body.
	Body func() (io.Reader, string)
	// NoCSRF sends no CSRF token; Anonymous sends no session cookie either.
	NoCSRF, Anonymous bool
	Status            int
	Message           string
}

// jsonBody is a JSON request body.
func jsonBody(s string) func() (io.Reader, string) {
	return func() (io.Reader, string) { return strings.NewReader(s), "application/json" }
}

// upload is a multipart body of files.
func upload(files ...File) func() (io.Reader, string) {
	return func() (io.Reader, string) { return UploadBody(files...) }
}

// BadRequests covers every route with input a client can get wrong. own is
// an item of the user the requests are sent as, bobs an item of user
// "bob"; maxUpload and maxFiles are the catalog's upload limits.
func BadRequests(own, bobs, maxUpload int64, maxFiles int) []BadRequest {
	big := strings.Repeat("x", 70<<10)
	png := File{Name: "a.png", Data: PNG(10, 10)}
	tooBig := bytes.Repeat([]byte{1}, int(maxUpload)+1)
	limit := fmt.Sprintf("the limit is %d MiB", maxUpload>>20)
	tooMany := make([]File, maxFiles+1)
	for i := range tooMany {
		tooMany[i] = png
	}
	ownImages := fmt.Sprintf("/items/%d/images", own)
	longName := strings.Repeat("n", int(maxUpload/2)) + ".png"
	return []BadRequest{
		{Name: "login without a body", Method: "POST", Path: "/login", Status: 415, Message: "send a JSON body"},
		{Name: "login as text", Method: "POST", Path: "/login", Body: func() (io.Reader, string) { return strings.NewReader("ann"), "text/plain" }, Status: 415, Message: "text/plain is not accepted"},
		{Name: "login with a number", Method: "POST", Path: "/login", Body: jsonBody(`{"name": 5}`), Status: 400, Message: "name: want a string, got a number"},
		{Name: "login without name", Method: "POST", Path: "/login", Body: jsonBody(`{}`), Status: 400, Message: "name is required"},
		{Name: "login with a blank name", Method: "POST", Path: "/login", Body: jsonBody(`{"name": "  "}`), Status: 400, Message: "name must not be empty"},
		{Name: "login with an array", Method: "POST", Path: "/login", Body: jsonBody(`[1]`), Status: 400, Message: "must be a JSON object"},
		{Name: "login with broken JSON", Method: "POST", Path: "/login", Body: jsonBody(`{"name":`), Status: 400, Message: "must be a JSON object"},
		{Name: "login with a long name", Method: "POST", Path: "/login", Body: jsonBody(`{"name": "` + strings.Repeat("n", 65) + `"}`), Status: 400, Message: "at most 64 characters"},
		{Name: "login with invalid UTF-8", Method: "POST", Path: "/login", Body: jsonBody("{\"name\": \"\xff\xfe\"}"), Status: 400, Message: "valid UTF-8"},
		{Name: "create with invalid UTF-8", Method: "POST", Path: "/items", Body: jsonBody("{\"name\": \"lamp\xc3\"}"), Status: 400, Message: "valid UTF-8"},
		{Name: "login with a control character", Method: "POST", Path: "/login", Body: jsonBody(`{"name": "a\u0000b"}`), Status: 400, Message: "control characters"},
		{Name: "login with a lone surrogate", Method: "POST", Path: "/login", Body: jsonBody(`{"name": "\ud800ann"}`), Status: 400, Message: "must not contain U+FFFD"},
		{Name: "login with a zero-width space", Method: "POST", Path: "/login", Body: jsonBody(`{"name": "ann\u200b"}`), Status: 400, Message: "must not contain U+200B"},
		{Name: "create with a right-to-left override", Method: "POST", Path: "/items", Body: jsonBody(`{"name": "\u202egnp.exe"}`), Status: 400, Message: "must not contain U+202E"},
		{Name: "login too large", Method: "POST", Path: "/login", Body: jsonBody(`{"name": "` + big + `"}`), Status: 413, Message: "the limit is 64 KiB"},
		{Name: "logout without CSRF", Method: "POST", Path: "/logout", NoCSRF: true, Status: 419, Message: "no CSRF token"},
		{Name: "me anonymous", Method: "GET", Path: "/me", Anonymous: true, Status: 401, Message: "not logged in"},
		{Name: "create without CSRF", Method: "POST", Path: "/items", Body: jsonBody(`{"name":"x"}`), NoCSRF: true, Status: 419, Message: "no CSRF token"},
		{Name: "create anonymous", Method: "POST", Path: "/items", Body: jsonBody(`{"name":"x"}`), Anonymous: true, Status: 419, Message: "CSRF"},
		{Name: "create without name", Method: "POST", Path: "/items", Body: jsonBody(`{"description":"x"}`), Status: 400, Message: "name is required"},
		{Name: "create with an array", Method: "POST", Path: "/items", Body: jsonBody(`{"name":["x"]}`), Status: 400, Message: "name: want a string, got an array"},
		{Name: "create with a number description", Method: "POST", Path: "/items", Body: jsonBody(`{"name":"x","description":1}`), Status: 400, Message: "description: want a string, got a number"},
		{Name: "create with a form missing name", Method: "POST", Path: "/items", Body: func() (io.Reader, string) {
			return strings.NewReader("description=x"), "application/x-www-form-urlencoded"
		}, Status: 400, Message: "name is required"},
		{Name: "list anonymous", Method: "GET", Path: "/items", Anonymous: true, Status: 401, Message: "not logged in"},
		{Name: "list with limit 0", Method: "GET", Path: "/items?limit=0", Status: 400, Message: "limit=\"0\": want an integer from 1 to 100"},
		{Name: "list with a word limit", Method: "GET", Path: "/items?limit=ten", Status: 400, Message: "limit=\"ten\""},
		{Name: "list before -1", Method: "GET", Path: "/items?before=-1", Status: 400, Message: "before=\"-1\""},
		{Name: "item word ID", Method: "GET", Path: "/items/abc", Status: 400, Message: "id \"abc\" is not a positive integer"},
		{Name: "item 0", Method: "GET", Path: "/items/0", Status: 400, Message: "not a positive integer"},
		{Name: "item long ID", Method: "GET", Path: "/items/" + strings.Repeat("9x", 5000), Status: 400, Message: `id "` + strings.Repeat("9x", 32) + `…" is not a positive integer`},
		{Name: "item unknown", Method: "GET", Path: "/items/999", Status: 404, Message: "item 999 does not exist"},
		{Name: "upload to unknown item", Method: "POST", Path: "/items/999/images", Body: upload(png), Status: 404, Message: "item 999 does not exist"},
		{Name: "upload to someone else's item", Method: "POST", Path: fmt.Sprintf("/items/%d/images", bobs), Body: upload(png), Status: 403, Message: "belongs to bob"},
		{Name: "upload as JSON", Method: "POST", Path: ownImages, Body: jsonBody(`{}`), Status: 400, Message: "multipart/form-data"},
		{Name: "upload no files", Method: "POST", Path: ownImages, Body: upload(), Status: 400, Message: "no files"},
		{Name: "upload an empty file", Method: "POST", Path: ownImages, Body: upload(File{Name: "e.png"}), Status: 400, Message: "file e.png is empty"},
		{Name: "upload too many files", Method: "POST", Path: ownImages, Body: upload(tooMany...), Status: 400, Message: fmt.Sprintf("at most %d per upload", maxFiles)},
		{Name: "upload too large", Method: "POST", Path: ownImages, Body: upload(File{Name: "big.png", Data: tooBig}), Status: 413, Message: limit},
		{Name: "upload too large, streamed", Method: "POST", Path: ownImages, Body: func() (io.Reader, string) {
			b, ctype := UploadBody(png, File{Name: "big.png", Data: tooBig})
			return io.MultiReader(b), ctype // no Content-Length: the limit trips while streaming
		}, Status: 413, Message: limit},
		{Name: "upload a long file name", Method: "POST", Path: ownImages, Body: upload(png, File{Name: longName, Data: PNG(10, 10)}), Status: 400, Message: fmt.Sprintf("file name is %d bytes long: at most 255 are accepted", len(longName))},
		{Name: "upload a long part header", Method: "POST", Path: ownImages, Body: func() (io.Reader, string) {
			junk := strings.Repeat("j", 100<<10)
			return strings.NewReader("--b\r\nContent-Disposition: form-data; name=\"images\"; filename=\"a.png\"\r\nX-Junk: " + junk + "\r\n\r\nx\r\n--b--\r\n"), "multipart/form-data; boundary=b"
		}, Status: 400, Message: "the header of part 1 is 102"},
		{Name: "upload without CSRF", Method: "POST", Path: ownImages, Body: upload(png), NoCSRF: true, Status: 419, Message: "no valid CSRF token"},
		{Name: "upload a wrong field", Method: "POST", Path: ownImages, Body: func() (io.Reader, string) {
			return strings.NewReader("--b\r\nContent-Disposition: form-data; name=\"pics\"; filename=\"a.png\"\r\n\r\nx\r\n--b--\r\n"), "multipart/form-data; boundary=b"
		}, Status: 400, Message: "unexpected field \"pics\""},
		{Name: "upload a broken multipart", Method: "POST", Path: ownImages, Body: func() (io.Reader, string) {
			return strings.NewReader("--b\r\nContent-Disp"), "multipart/form-data; boundary=b"
		}, Status: 400, Message: "multipart body cannot be read"},
		{Name: "image unknown", Method: "GET", Path: fmt.Sprintf("/items/%d/images/nope.png", own), Status: 404, Message: "has no image \"nope.png\""},
		{Name: "image of an unknown item", Method: "GET", Path: "/items/999/images/a.png", Status: 404, Message: "item 999 does not exist"},
		{Name: "image odd size", Method: "GET", Path: fmt.Sprintf("/items/%d/images/a.png?size=33", own), Status: 400, Message: "size=33: want 0 (the original) or one of the thumbnail sizes [160 640]"},
		{Name: "image word size", Method: "GET", Path: fmt.Sprintf("/items/%d/images/a.png?size=big", own), Status: 400, Message: "size=\"big\""},
		{Name: "item page unknown", Method: "GET", Path: "/view/items/999", Status: 404, Message: "item 999 does not exist"},
		{Name: "wrong method", Method: "DELETE", Path: "/items", Status: 405, Message: "Method Not Allowed"},
		{Name: "unknown route", Method: "GET", Path: "/nope", Status: 404, Message: "not found"},
	}
}

// RunBadRequests sends each request as user (or anonymously) to user.Base
// in a subtest, and checks its status and message.
func RunBadRequests(t *testing.T, user *Client, reqs []BadRequest) {
	for _, br := range reqs {
		t.Run(br.Name, func(t *testing.T) {
			c := NewClient(t, user.Base)
			if !br.Anonymous {
				c.HTTP.Jar, c.CSRF = user.HTTP.Jar, user.CSRF
			}
			if br.NoCSRF {
				c.CSRF = ""
			}
			var body io.Reader
			h := http.Header{}
			if br.Body != nil {
				var ctype string
				body, ctype = br.Body()
				h.Set("Content-Type", ctype)
			}
			resp, b := c.Do(br.Method, br.Path, body, h)
			msg := ErrorOf(b)
			if msg == "" {
				msg = string(b) // a plain-text answer (CSRF, the mux)
			}
			if resp.StatusCode != br.Status || !strings.Contains(msg, br.Message) {
				t.Fatalf("%s %s: %d %s\nwant %d with %q", br.Method, br.Path, resp.StatusCode, b, br.Status, br.Message)
			}
		})
	}
}
