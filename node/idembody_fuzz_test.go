package node

import (
	"mime"
	"net/http/httptest"
	"testing"
)

// FuzzFingerprintIgnoresHowTheBodyArrives: a body's fingerprint is the
// same however its bytes arrive (one read or two, split anywhere, inside
// a delimiter too), and the same with another boundary of the same
// content when no delimiter hides in it: what a retry over another
// connection, or from curl -F again, sends.
func FuzzFingerprintIgnoresHowTheBodyArrives(f *testing.F) {
	f.Add([]byte("--a\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nxx--ayy\r\n--a--\r\n"), "a", uint16(7))
	f.Add([]byte("\r\n--bnd\r\n\r\n--bnd--"), "bnd", uint16(3))
	f.Add([]byte(""), "x", uint16(0))
	f.Fuzz(func(t *testing.T, body []byte, boundary string, cut uint16) {
		ct := mime.FormatMediaType("multipart/form-data", map[string]string{"boundary": boundary})
		if ct == "" || boundary == "" {
			return
		}
		r := httptest.NewRequest("POST", "/", nil)
		r.Header.Set("Content-Type", ct)
		sum := func(parts ...[]byte) string {
			z := newNormalizer(r, 1<<20)
			for _, p := range parts {
				z.write(p)
			}
			z.flush()
			return z.fingerprint(true)
		}
		i := int(cut) % (len(body) + 1)
		if whole, split := sum(body), sum(body[:i], body[i:]); whole != split {
			t.Fatalf("split at %d: %s, whole: %s", i, split, whole)
		}
	})
}
