package node

// A keyed request's body fingerprint: what tells a retry of the same
// request from another request reusing its key.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// fingerprintVersion starts a fingerprint of the form
// v2:<sha256>/<bytes covered>/<1 when the body ended there, else 0>.
const fingerprintVersion = "v2:"

// multipartToken stands for a multipart body's boundary in its
// fingerprint: curl -F, browsers and Go's multipart.Writer pick a new
// random boundary for every send, retries included.
const multipartToken = "jetfleet-boundary"

// hashBody hashes a request body as the handler reads it, holding none of
// it: the media type and the declared length, then the first limit bytes
// the handler read, with a multipart body's delimiters written with
// multipartToken. What the handler did not read is not read at all: bytes
// it never saw cannot have shaped its answer (a repeat of another length
// differs anyway), and a key must not make a node read what its handler
// would not (a refused upload, a route's size limit).
type hashBody struct {
	io.ReadCloser
	mu       sync.Mutex
	norm     *normalizer
	complete bool // the body ended (EOF, or all of its Content-Length read)
	raw      int64
	length   int64 // Content-Length, -1 when unknown
}

// newHashBody wraps r's body.
func newHashBody(r *http.Request, limit int64) *hashBody {
	return &hashBody{ReadCloser: r.Body, norm: newNormalizer(r, limit), length: r.ContentLength}
}

// Read reads and hashes.
func (b *hashBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.mu.Lock()
	b.norm.write(p[:n])
	b.raw += int64(n)
	if errors.Is(err, io.EOF) || (b.length >= 0 && b.raw >= b.length) {
		b.complete = true
	}
	b.mu.Unlock()
	return n, err
}

// sum is the fingerprint.
func (b *hashBody) sum() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.complete {
		b.norm.flush()
	}
	// Else what may be the start of a delimiter is left out: a repeat
	// reads it whole.
	return b.norm.fingerprint(b.complete)
}

// matches reads r's body as far as the fingerprint fp covers (no
// further, and with the time that much needs) and reports whether it is
// the body fp was taken of. A fingerprint of an older form is not
// checked.
func matches(fp string, w http.ResponseWriter, r *http.Request) (bool, error) {
	sum, covered, complete, ok := parseFingerprint(fp)
	if !ok {
		return true, nil
	}
	if covered > 0 {
		_ = AllowUpload(w, r, covered)
	}
	norm := newNormalizer(r, covered)
	buf := make([]byte, 32<<10)
	ended := false
	for norm.n <= covered && !(norm.n == covered && !complete) {
		n, err := r.Body.Read(buf)
		norm.write(buf[:n])
		if errors.Is(err, io.EOF) {
			norm.flush()
			ended = true
			break
		}
		if err != nil {
			return false, err
		}
	}
	got := norm.fingerprint(ended)
	if complete {
		return ended && got == fp, nil
	}
	gotSum, gotCovered, _, _ := parseFingerprint(got)
	return gotSum == sum && gotCovered == covered, nil
}

// parseFingerprint splits a v2 fingerprint.
func parseFingerprint(fp string) (sum string, covered int64, complete, ok bool) {
	rest, ok := strings.CutPrefix(fp, fingerprintVersion)
	if !ok {
		return "", 0, false, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return "", 0, false, false
	}
	covered, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || covered < 0 {
		return "", 0, false, false
	}
	return parts[0], covered, parts[2] == "1", true
}

// normalizer hashes a body's bytes with every occurrence of marker (a
// multipart body's delimiter, CRLF "--<boundary>", the body read as if a
// CRLF came first) written with the fixed token, counting the bytes
// hashed (n) up to limit. A tail that may be the start of a marker is
// held until the next bytes say.
type normalizer struct {
	h      hash.Hash
	marker []byte
	held   []byte
	n      int64 // normalized bytes seen; those up to limit are hashed
	limit  int64
}

func newNormalizer(r *http.Request, limit int64) *normalizer {
	z := &normalizer{h: sha256.New(), limit: limit}
	contentType := r.Header.Get("Content-Type")
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(contentType))
	}
	length := r.ContentLength
	if b := params["boundary"]; strings.HasPrefix(mt, "multipart/") && b != "" {
		z.marker = []byte("\r\n--" + b)
		z.held = []byte("\r\n")
		length = -1 // a new boundary changes it
	}
	fmt.Fprintf(z.h, "%s\n%d\n", mt, length)
	return z
}

// write hashes p.
func (z *normalizer) write(p []byte) {
	if len(z.marker) == 0 {
		z.emit(p)
		return
	}
	data := append(z.held, p...)
	for {
		i := bytes.Index(data, z.marker)
		if i < 0 {
			break
		}
		z.emit(data[:i])
		z.emit([]byte("\r\n--" + multipartToken))
		data = data[i+len(z.marker):]
	}
	keep := min(len(data), len(z.marker)-1)
	z.emit(data[:len(data)-keep])
	z.held = append(z.held[:0:0], data[len(data)-keep:]...)
}

// flush hashes what is held: the body ended, or the handler stopped
// reading there.
func (z *normalizer) flush() {
	z.emit(z.held)
	z.held = nil
}

// emit hashes p as far as the limit allows, and counts it.
func (z *normalizer) emit(p []byte) {
	if room := z.limit - z.n; room > 0 {
		z.h.Write(p[:min(int64(len(p)), room)])
	}
	z.n += int64(len(p))
}

// fingerprint is the v2 fingerprint of what was hashed.
func (z *normalizer) fingerprint(complete bool) string {
	ended := "0"
	if complete && z.n <= z.limit {
		ended = "1"
	}
	return fingerprintVersion + hex.EncodeToString(z.h.Sum(nil)) + "/" + strconv.FormatInt(min(z.n, z.limit), 10) + "/" + ended
}
