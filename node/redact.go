package node

// Secrets never reach a log line or an error: URLs are shown with their
// user information hidden, and error texts that may quote a setting (a
// URL the NATS client could not parse, say) have every known secret
// replaced.

import (
	"net/url"
	"slices"
	"strings"
)

// redacted replaces a secret in what jetfleet prints.
const redacted = "xxxxx"

// minSecretLen is the shortest secret scrubbed from error texts: shorter
// ones would mangle ordinary words and protect nothing.
const minSecretLen = 3

// RedactURL returns list, one URL or a comma-separated list of them (as
// NATS_URL takes), with the user information of each hidden: a user and
// password as user:xxxxx, a lone user name (how a token is written,
// nats://TOKEN@host) as xxxxx. It works on the text, so a URL that does not
// parse is redacted too.
func RedactURL(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		parts[i] = redactOne(p)
	}
	return strings.Join(parts, ",")
}

// redactOne hides the user information of one URL: everything between the
// scheme's "://" (or the start) and the last '@'.
func redactOne(s string) string {
	prefix, rest := "", s
	if i := strings.Index(s, "://"); i >= 0 {
		prefix, rest = s[:i+3], s[i+3:]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return s
	}
	user, _, hasPassword := strings.Cut(rest[:at], ":")
	if !hasPassword {
		return prefix + redacted + rest[at:]
	}
	return prefix + user + ":" + redacted + rest[at:]
}

// urlSecrets are the secrets in the user information of list's URLs: each
// password, each lone user name (a token), as written and decoded.
func urlSecrets(list string) []string {
	var out []string
	for _, p := range strings.Split(list, ",") {
		rest := p
		if i := strings.Index(p, "://"); i >= 0 {
			rest = p[i+3:]
		}
		at := strings.LastIndex(rest, "@")
		if at < 0 {
			continue
		}
		info := rest[:at]
		secret := info
		if _, pw, ok := strings.Cut(info, ":"); ok {
			secret = pw
		}
		out = append(out, secret)
		if dec, err := url.PathUnescape(secret); err == nil && dec != secret {
			out = append(out, dec)
		}
		out = append(out, info)
	}
	return out
}

// scrubbedError is an error whose text has had secrets replaced; errors.Is
// and errors.As still see the original.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// scrub returns err with every secret (of at least minSecretLen bytes) in
// its text replaced by xxxxx; nil stays nil and an error without secrets
// is returned as it is.
func scrub(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := scrubText(err.Error(), secrets...)
	if msg == err.Error() {
		return err
	}
	return &scrubbedError{msg: msg, err: err}
}

// scrubText replaces every secret of at least minSecretLen bytes in s,
// longest first (so a secret holding another is replaced whole).
func scrubText(s string, secrets ...string) string {
	sorted := make([]string, 0, len(secrets))
	for _, sec := range secrets {
		if len(sec) >= minSecretLen {
			sorted = append(sorted, sec)
		}
	}
	slices.SortFunc(sorted, func(a, b string) int { return len(b) - len(a) })
	for _, sec := range sorted {
		s = strings.ReplaceAll(s, sec, redacted)
	}
	return s
}

// natsSecrets are the secrets of the NATS settings: the user information
// of url, NATS_PASSWORD and NATS_TOKEN.
func natsSecrets(getenv func(string) string, url string) []string {
	return append(urlSecrets(url), getenv("NATS_PASSWORD"), getenv("NATS_TOKEN"))
}
