package node

// What the idempotency middleware keeps in its bucket, and how: one key
// per (scope, Idempotency-Key), named by a hash of both, holding an
// AES-256-GCM sealed record whose key is derived from the same two. The
// bucket therefore holds neither the client's keys nor readable responses
// (which may carry session cookies): only a client that sends the key in
// the same scope can open its record.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

// Record states.
const (
	stateRunning = "running"
	stateDone    = "done"
)

// idemRecord is the value of one key: a request still running (its lease)
// or its stored response.
type idemRecord struct {
	State  string `json:"state"`
	Method string `json:"method"`
	Path   string `json:"path"`
	// Owner is the process (host/pid/random) running the request.
	Owner      string    `json:"owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
	// Fingerprint is the request body's hash (done records only).
	Fingerprint string      `json:"fingerprint,omitempty"`
	Status      int         `json:"status,omitempty"`
	Header      http.Header `json:"header,omitempty"`
	// Omitted is the size of a response body that was larger than
	// MaxResponseBytes and so not stored.
	Omitted int64 `json:"omitted,omitempty"`
	// Body follows the JSON line in the sealed value, raw.
	Body []byte `json:"-"`
}

// idemKeys are the bucket key and the sealing key of one
// (scope, Idempotency-Key).
type idemKeys struct {
	kv   string
	aead cipher.AEAD
}

// deriveKeys hashes scope and key into the bucket key and the record's
// AES-256-GCM key (two hashes of different domains).
func deriveKeys(scope, key string) (idemKeys, error) {
	name := sha256.Sum256([]byte("jetfleet-idempotency-name\x00" + scope + "\x00" + key))
	secret := sha256.Sum256([]byte("jetfleet-idempotency-seal\x00" + scope + "\x00" + key))
	block, err := aes.NewCipher(secret[:])
	if err != nil {
		return idemKeys{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return idemKeys{}, err
	}
	return idemKeys{kv: "k." + base64.RawURLEncoding.EncodeToString(name[:]), aead: aead}, nil
}

// seal encodes rec (its JSON, a newline, its body) and encrypts it.
func (k idemKeys) seal(rec *idemRecord) ([]byte, error) {
	head, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	plain := make([]byte, 0, len(head)+1+len(rec.Body))
	plain = append(append(append(plain, head...), '\n'), rec.Body...)
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return k.aead.Seal(nonce, nonce, plain, nil), nil
}

// errUnreadable is a record that does not open with the request's keys:
// corrupted, or written by something else.
var errUnreadable = errors.New("idempotency record does not open with this key")

// open decrypts and decodes a sealed record.
func (k idemKeys) open(sealed []byte) (*idemRecord, error) {
	n := k.aead.NonceSize()
	if len(sealed) < n {
		return nil, errUnreadable
	}
	plain, err := k.aead.Open(nil, sealed[:n], sealed[n:], nil)
	if err != nil {
		return nil, errUnreadable
	}
	head, body, _ := bytes.Cut(plain, []byte{'\n'})
	var rec idemRecord
	if err := json.Unmarshal(head, &rec); err != nil {
		return nil, fmt.Errorf("%w: %w", errUnreadable, err)
	}
	rec.Body = body
	return &rec, nil
}

// storedHeader is what of a response's header a record keeps: all but the
// hop-by-hop fields, Date and Content-Length (written anew on replay).
func storedHeader(h http.Header) http.Header {
	out := make(http.Header, len(h))
	for k, v := range h {
		switch http.CanonicalHeaderKey(k) {
		case "Connection", "Keep-Alive", "Transfer-Encoding", "Trailer", "Upgrade", "Proxy-Connection",
			"Date", "Content-Length":
			continue
		}
		out[k] = append([]string(nil), v...)
	}
	return out
}

// Bounds of an Idempotency-Key.
const (
	minKeyLen = 8
	maxKeyLen = 255
)

// checkKey returns the Idempotency-Key of a request's header values, or
// says what is wrong with it. A key sent as a structured-field string
// ("..."), as the IETF draft writes it, is taken without its quotes.
func checkKey(values []string) (key, problem string) {
	if len(values) > 1 {
		return "", "send one Idempotency-Key header, not several"
	}
	k := values[0]
	if len(k) >= 2 && k[0] == '"' && k[len(k)-1] == '"' {
		k = k[1 : len(k)-1]
	}
	if len(k) < minKeyLen || len(k) > maxKeyLen {
		return "", fmt.Sprintf("Idempotency-Key is %d characters long; want %d to %d (a UUID is 36)", len(k), minKeyLen, maxKeyLen)
	}
	if i := strings.IndexFunc(k, func(c rune) bool { return !keyChar(c) }); i >= 0 {
		c, _ := utf8.DecodeRuneInString(k[i:])
		return "", fmt.Sprintf("Idempotency-Key has %q at byte %d; want letters, digits and - _ . : ~ + / =", c, i)
	}
	return k, ""
}

// keyChar is a character allowed in an Idempotency-Key.
func keyChar(c rune) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.ContainsRune("-_.:~+/=", c)
}
