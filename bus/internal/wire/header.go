package wire

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
)

// EncodeHeaderText makes s fit in one header value of at most limit bytes
// (at least 64): line breaks become the two characters `\n` (and a
// backslash `\\`), and a text that is too long is cut with a note.
// DecodeHeaderText reverses it.
func EncodeHeaderText(s string, limit int) string {
	s = strings.NewReplacer(`\`, `\\`, "\r\n", `\n`, "\n", `\n`, "\r", `\n`).Replace(s)
	if limit < 64 {
		limit = 64
	}
	if len(s) > limit {
		s = cutText(s, limit-16) + " …[truncated]"
	}
	return s
}

// cutText is s cut to at most n bytes without splitting a UTF-8 character
// or an escape (a backslash and what it escapes).
func cutText(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	s = s[:n]
	trailing := len(s) - len(strings.TrimRight(s, `\`))
	if trailing%2 == 1 {
		s = s[:len(s)-1]
	}
	return s
}

// DecodeHeaderText turns a header written by EncodeHeaderText back into text.
func DecodeHeaderText(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch s[i+1] {
			case 'n':
				b.WriteByte('\n')
				i++
				continue
			case '\\':
				b.WriteByte('\\')
				i++
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// ParseDuration reads a duration as the Jetfleet-Timeout header holds it:
// a Go duration ("1m30s") or a number of seconds ("90").
func ParseDuration(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(n) || math.Abs(n) > math.MaxInt64/float64(time.Second) {
			return 0, fmt.Errorf("%q is not a number of seconds a duration can hold", v)
		}
		return time.Duration(n * float64(time.Second)), nil
	}
	return time.ParseDuration(v)
}

// ParseBackoff reads the Jetfleet-Backoff header's form: a comma-separated
// list of durations ("1s,10s,60s"), each as ParseDuration reads it.
func ParseBackoff(v string) ([]time.Duration, error) {
	var out []time.Duration
	for _, p := range strings.Split(v, ",") {
		d, err := ParseDuration(p)
		if err != nil || d < 0 {
			return nil, fmt.Errorf("%q is not a list of durations like 1s,10s,60s", v)
		}
		out = append(out, d)
	}
	return out, nil
}

// FormatBackoff writes delays in the Jetfleet-Backoff header's form.
func FormatBackoff(delays []time.Duration) string {
	parts := make([]string, len(delays))
	for i, d := range delays {
		parts[i] = d.String()
	}
	return strings.Join(parts, ",")
}

// HeaderSize is how many bytes h takes on the wire, for checks against the
// server's max_payload.
func HeaderSize(h nats.Header) int64 {
	n := int64(len("NATS/1.0\r\n\r\n"))
	for k, vs := range h {
		for _, v := range vs {
			n += int64(len(k) + len(": \r\n") + len(v))
		}
	}
	return n
}
