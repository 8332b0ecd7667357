package main

import (
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// termSafe wraps w so that what passes through it cannot drive the
// terminal: control characters other than newline and tab (ESC starts the
// sequences that clear the screen or set a window's title), C1 controls
// and bytes that are not UTF-8 are written as Go escapes (\x1b, \u0085).
// The commands that print what anyone who can publish may have written
// (job bodies, headers, errors, tags) print through it.
func termSafe(w io.Writer) io.Writer { return termSafeWriter{w} }

type termSafeWriter struct{ w io.Writer }

func (t termSafeWriter) Write(p []byte) (int, error) {
	if !needsEscape(p) {
		return t.w.Write(p)
	}
	var b strings.Builder
	for rest := p; len(rest) > 0; {
		r, size := utf8.DecodeRune(rest)
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, rest[0])
		case unsafeRune(r) && r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		case unsafeRune(r):
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.Write(rest[:size])
		}
		rest = rest[size:]
	}
	if _, err := io.WriteString(t.w, b.String()); err != nil {
		return 0, err
	}
	return len(p), nil
}

// unsafeRune reports whether r is a control character a terminal may act
// on: any but newline and tab.
func unsafeRune(r rune) bool { return r != '\n' && r != '\t' && unicode.IsControl(r) }

// needsEscape reports whether p holds anything termSafe rewrites.
func needsEscape(p []byte) bool {
	for len(p) > 0 {
		r, size := utf8.DecodeRune(p)
		if r == utf8.RuneError && size == 1 || unsafeRune(r) {
			return true
		}
		p = p[size:]
	}
	return false
}
