package sessions

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
)

// tokenBytes is the size of a session token: 256 bits.
const tokenBytes = 32

// tokenLen is the length of a token as it travels in the cookie.
var tokenLen = base64.RawURLEncoding.EncodedLen(tokenBytes)

// newToken returns a fresh server-issued token: 256 bits from crypto/rand,
// base64url without padding (43 characters).
func newToken() string {
	return randomText()
}

// randomText is 256 bits from crypto/rand, base64url. crypto/rand.Read
// never returns an error (Go 1.24+): it aborts the program instead.
func randomText() string {
	b := make([]byte, tokenBytes)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// parseToken checks that a cookie value has the exact shape of a token this
// package issues (43 canonical base64url characters encoding 32 bytes). It
// says nothing about whether the token was ever issued: only the bucket
// knows that.
func parseToken(v string) (string, bool) {
	if len(v) != tokenLen {
		return "", false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(v)
	if err != nil || len(b) != tokenBytes {
		return "", false
	}
	return v, true
}

// storageKey is the KV key of a token: the hex SHA-256 of the token, so a
// listing of the bucket reveals no usable token.
func storageKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// newCSRFToken returns 256 random bits, base64url.
func newCSRFToken() string {
	return randomText()
}
