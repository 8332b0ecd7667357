package sessions

import (
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/jetfleet/jetfleet/sessions/internal/bucket"
)

// Config configures a Manager. The zero value is ready to use: each field
// documents its default. All nodes serving one bucket must use the same
// timeouts and cookie settings.
type Config struct {
	// Bucket is the JetStream KV bucket that holds the sessions; New
	// creates it when missing. Default "sessions".
	Bucket string
	// Replicas is the bucket's replica count. Default 1; use 3 in a
	// three-node cluster. An existing bucket with more replicas keeps
	// them: a node never lowers the count (`nats stream edit KV_sessions
	// --replicas 1` does), so a web node started without it does not undo
	// `jetfleet up --replicas 3`.
	Replicas int
	// MaxBytes bounds the bucket (SESSION_MAX_BYTES), so that visitors who
	// each get a session cannot fill the NATS account's storage that jobs
	// share. When a save would pass it, the server removes the sessions
	// written least recently; their clients get a fresh session, as after
	// the idle timeout. Negative: no bound. Default 256 MiB (about a
	// million sessions of a few hundred bytes). The NATS server reserves
	// the bound from its storage when it creates the bucket.
	MaxBytes int64
	// IdleTimeout ends a session after this long without a request (the
	// sliding timeout, SESSION_LIFETIME). It is also the bucket's TTL, so
	// records of idle sessions disappear without a sweeper. At least one
	// second. Default 120 minutes.
	IdleTimeout time.Duration
	// AbsoluteTimeout ends a session this long after it was created,
	// whatever its activity (SESSION_ABSOLUTE_LIFETIME). Default 24 hours.
	AbsoluteTimeout time.Duration
	// RefreshFraction throttles idle-deadline refreshes: a request that
	// changes nothing writes to the bucket only when at least this fraction
	// of IdleTimeout has passed since the session was last written. A
	// session therefore ends after between (1-RefreshFraction)·IdleTimeout
	// and IdleTimeout of inactivity, never later. Between 0 and 0.5.
	// Default 0.1 (one write per 12 minutes at most with the 120-minute
	// default).
	RefreshFraction float64
	// ExpireOnClose issues a session cookie (no Expires or Max-Age), which
	// the browser drops when it closes (SESSION_EXPIRE_ON_CLOSE). Default
	// false: the cookie persists until the absolute deadline.
	ExpireOnClose bool
	// Cookie sets the cookie's name and attributes.
	Cookie CookieConfig
	// TrustedProxies are the addresses (prefixes) of the proxies whose
	// X-Forwarded-Proto header is believed: a request that came from one
	// of them with X-Forwarded-Proto: https counts as HTTPS for the
	// cookie's automatic Secure attribute (SESSION_TRUSTED_PROXIES). The
	// header of any other client is ignored. Default none.
	TrustedProxies []netip.Prefix
	// CSRFFailureStatus is the status the CSRF middleware answers with when
	// a token is missing or wrong: 419 (Laravel's "Page Expired") or 403.
	// Default 419.
	CSRFFailureStatus int
	// FailOpen, when the bucket cannot be reached while loading a session,
	// serves the request with an empty session that is never saved and no
	// cookie. Default false: fail closed, the request is answered by
	// ErrorHandler with 503 and the application handler does not run.
	FailOpen bool
	// ErrorHandler answers a request whose session could not be loaded or
	// saved. err wraps ErrUnavailable when NATS or the bucket cannot be
	// reached, ErrTooLarge when the session exceeds the server's max
	// payload. Default: 503 with Retry-After for ErrUnavailable, 500
	// otherwise, with a plain-text message naming the cause.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)
	// Logger receives every error the middleware handles, at warn level
	// with the request's method and path, including those it does not
	// answer with an error page (changes discarded because the session was
	// destroyed concurrently, ErrSessionGone). The zero value logs nothing.
	Logger zerolog.Logger
	// StoreTimeout bounds each load and each save, including the retries
	// made while the bucket elects a leader (each attempt gets at most 2s).
	// Default 10 seconds: a leader election after a server dies takes a
	// few seconds.
	StoreTimeout time.Duration
	// LocalCopy is how many sessions this node keeps in its copy of the
	// bucket, kept up to date by a KV watch: a load whose session is in
	// the copy at the revision the client has seen (or later) makes no
	// request to NATS. Every node receives every session write. Sessions
	// beyond the limit are read from NATS (a direct get). Negative turns
	// the copy off. Default 100,000: tens of megabytes for sessions of a
	// few hundred bytes; the copy holds whole records, so its memory is
	// the limit times the sessions' size (and at most MaxBytes). Sessions
	// removed from the bucket keep their place until their idle timeout,
	// so a burst of new sessions can fill the copy for that long: loads
	// then read from NATS, as beyond the limit.
	LocalCopy int
	// MaxRetries bounds how often a save reloads and merges after a
	// concurrent write to the same session. Default 10.
	MaxRetries int
	// Observe, when set, is called with every store operation (loads,
	// saves, conflicts, store errors), for metrics. It must be quick and
	// safe for concurrent use. Default: nil.
	Observe func(Event)
	// TracerProvider starts the spans of session loads, saves and deletes
	// (tracing.go). Default: the OpenTelemetry global provider, a no-op
	// unless the program sets one.
	TracerProvider trace.TracerProvider
	// Now is the clock used for deadlines. Default time.Now. Tests set it
	// to move time forward.
	Now func() time.Time
}

// CookieConfig sets the session cookie. The cookie is always HttpOnly: no
// script needs the session token (use CSRFToken for forms and XHR).
type CookieConfig struct {
	// Name of the cookie (SESSION_COOKIE). Default "jetfleet_session".
	Name string
	// Domain attribute (SESSION_DOMAIN). Default none: host-only cookie.
	Domain string
	// Path attribute (SESSION_PATH). Default "/".
	Path string
	// Secure sets the Secure attribute on every response
	// (SESSION_SECURE_COOKIE=true), so browsers send the cookie over HTTPS
	// only. When neither Secure nor NeverSecure is set (the default,
	// SESSION_SECURE_COOKIE unset), the attribute is set automatically on
	// responses to requests that came over TLS, or through a trusted proxy
	// that says X-Forwarded-Proto: https (Config.TrustedProxies).
	Secure bool
	// NeverSecure leaves the Secure attribute off on every response, even
	// over HTTPS (SESSION_SECURE_COOKIE=false). It cannot be combined with
	// Secure.
	NeverSecure bool
	// SameSite attribute (SESSION_SAME_SITE). Default http.SameSiteLaxMode.
	// SameSiteNoneMode requires Secure.
	SameSite http.SameSite
	// Partitioned attribute, CHIPS (SESSION_PARTITIONED_COOKIE). Requires
	// Secure. Default false.
	Partitioned bool
}

const (
	defaultBucket          = "sessions"
	defaultCookieName      = "jetfleet_session"
	defaultIdleTimeout     = 120 * time.Minute
	defaultAbsoluteTimeout = 24 * time.Hour
	defaultRefreshFraction = 0.1
	defaultStoreTimeout    = 10 * time.Second
	defaultMaxRetries      = 10
	defaultLocalCopy       = 100_000
	defaultMaxBytes        = 256 << 20
	minMaxBytes            = 4 << 10
)

// withDefaults fills zero fields and checks the rest, naming the field and
// the rule it breaks.
func (c Config) withDefaults() (Config, error) {
	c.Bucket = or(c.Bucket, defaultBucket)
	c.Cookie.Name = or(c.Cookie.Name, defaultCookieName)
	c.Cookie.Path = or(c.Cookie.Path, "/")
	c.IdleTimeout = or(c.IdleTimeout, defaultIdleTimeout)
	c.AbsoluteTimeout = or(c.AbsoluteTimeout, defaultAbsoluteTimeout)
	c.RefreshFraction = or(c.RefreshFraction, defaultRefreshFraction)
	c.StoreTimeout = or(c.StoreTimeout, defaultStoreTimeout)
	c.MaxRetries = or(c.MaxRetries, defaultMaxRetries)
	c.LocalCopy = or(c.LocalCopy, defaultLocalCopy)
	c.MaxBytes = or(c.MaxBytes, defaultMaxBytes)
	c.CSRFFailureStatus = or(c.CSRFFailureStatus, StatusPageExpired)
	c.Replicas = or(c.Replicas, 1)
	if c.Cookie.SameSite == 0 {
		c.Cookie.SameSite = http.SameSiteLaxMode
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ErrorHandler == nil {
		c.ErrorHandler = defaultErrorHandler
	}
	return c, c.validate()
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// maxLifetime bounds IdleTimeout and AbsoluteTimeout: a session's
// deadlines are stored in nanoseconds since 1970, which end in 2262.
const maxLifetime = 100 * 365 * 24 * time.Hour

func (c Config) validate() error {
	checks := []struct {
		bad  bool
		rule string
	}{
		{!bucket.ValidName(c.Bucket), fmt.Sprintf("Bucket %q: use only letters, digits, '-' and '_'", c.Bucket)},
		{c.Replicas < 1 || c.Replicas > 5, fmt.Sprintf("Replicas %d: must be 1 to 5", c.Replicas)},
		{c.IdleTimeout < time.Second || c.IdleTimeout > maxLifetime, fmt.Sprintf("IdleTimeout %s: must be from 1s to 100 years (876000h)", c.IdleTimeout)},
		{c.AbsoluteTimeout < time.Second || c.AbsoluteTimeout > maxLifetime, fmt.Sprintf("AbsoluteTimeout %s: must be from 1s to 100 years (876000h)", c.AbsoluteTimeout)},
		{c.RefreshFraction <= 0 || c.RefreshFraction > 0.5, fmt.Sprintf("RefreshFraction %g: must be above 0 and at most 0.5", c.RefreshFraction)},
		{c.StoreTimeout < 0, fmt.Sprintf("StoreTimeout %s: must not be negative", c.StoreTimeout)},
		{c.MaxRetries < 0, fmt.Sprintf("MaxRetries %d: must not be negative", c.MaxRetries)},
		{c.MaxBytes >= 0 && c.MaxBytes < minMaxBytes, fmt.Sprintf("MaxBytes %d: must be at least %d, or negative for no bound", c.MaxBytes, minMaxBytes)},
		{c.CSRFFailureStatus < 400 || c.CSRFFailureStatus > 499, fmt.Sprintf("CSRFFailureStatus %d: must be a 4xx status", c.CSRFFailureStatus)},
		{c.Cookie.SameSite < http.SameSiteDefaultMode || c.Cookie.SameSite > http.SameSiteNoneMode, fmt.Sprintf("Cookie.SameSite %d: not an http.SameSite mode", c.Cookie.SameSite)},
		{c.Cookie.SameSite == http.SameSiteNoneMode && !c.Cookie.Secure, "Cookie.SameSite=None: browsers require Secure with it; set Cookie.Secure"},
		{c.Cookie.Partitioned && !c.Cookie.Secure, "Cookie.Partitioned: browsers require Secure with it; set Cookie.Secure"},
		{c.Cookie.Secure && c.Cookie.NeverSecure, "Cookie.Secure and Cookie.NeverSecure: choose one"},
	}
	for _, ch := range checks {
		if ch.bad {
			return fmt.Errorf("%w: %s", ErrConfig, ch.rule)
		}
	}
	probe := &http.Cookie{Name: c.Cookie.Name, Value: "x", Path: c.Cookie.Path, Domain: c.Cookie.Domain}
	if err := probe.Valid(); err != nil {
		return fmt.Errorf("%w: Cookie (name %q, path %q, domain %q): %w", ErrConfig, c.Cookie.Name, c.Cookie.Path, c.Cookie.Domain, err)
	}
	return nil
}

// ConfigFromEnv reads the session settings by their Laravel names:
//
//	SESSION_DRIVER             only "nats" (the default) is supported
//	SESSION_LIFETIME           idle timeout in minutes (or a Go duration like 90m); default 120
//	SESSION_ABSOLUTE_LIFETIME  absolute timeout in minutes (or a Go duration like 24h); default 24h
//	SESSION_EXPIRE_ON_CLOSE    true: browser-session cookie; default false
//	SESSION_COOKIE             cookie name; default jetfleet_session
//	SESSION_SECURE_COOKIE      true: Secure always; false: never; unset: when the request came over HTTPS
//	SESSION_TRUSTED_PROXIES    proxies (CIDRs or IPs, comma-separated) whose X-Forwarded-Proto is believed
//	SESSION_SAME_SITE          lax (default), strict or none (with SESSION_SECURE_COOKIE=true)
//	SESSION_DOMAIN             Domain attribute; empty or "null" for host-only
//	SESSION_PATH               Path attribute; default /
//	SESSION_PARTITIONED_COOKIE true: Partitioned attribute (with SESSION_SECURE_COOKIE=true); default false
//	SESSION_BUCKET             KV bucket name; default sessions
//	SESSION_REPLICAS           bucket replicas, 1 to 5; default 1
//	SESSION_MAX_BYTES          bound of the bucket in bytes, at least 4096, -1 for none; default 268435456 (256 MiB)
//
// getenv is usually os.Getenv. Unset variables leave the Config field at
// its zero value, so New applies the documented default. A malformed value
// is an error naming the variable.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	var c Config
	if d := strings.ToLower(getenv("SESSION_DRIVER")); d != "" && d != "nats" {
		return c, fmt.Errorf("%w: SESSION_DRIVER=%q: only \"nats\" is supported (sessions live in a NATS KV bucket)", ErrConfig, d)
	}
	e := envReader{getenv: getenv}
	c.IdleTimeout = e.minutes("SESSION_LIFETIME")
	c.AbsoluteTimeout = e.minutes("SESSION_ABSOLUTE_LIFETIME")
	c.ExpireOnClose = e.bool("SESSION_EXPIRE_ON_CLOSE")
	switch secure, set := e.optionalBool("SESSION_SECURE_COOKIE"); {
	case set && secure:
		c.Cookie.Secure = true
	case set:
		c.Cookie.NeverSecure = true
	}
	c.TrustedProxies = e.prefixes("SESSION_TRUSTED_PROXIES")
	c.Cookie.Partitioned = e.bool("SESSION_PARTITIONED_COOKIE")
	c.Cookie.SameSite = e.sameSite("SESSION_SAME_SITE")
	c.Cookie.Name = getenv("SESSION_COOKIE")
	c.Cookie.Path = getenv("SESSION_PATH")
	if d := getenv("SESSION_DOMAIN"); d != "null" {
		c.Cookie.Domain = d
	}
	c.Bucket = getenv("SESSION_BUCKET")
	c.Replicas = e.int("SESSION_REPLICAS")
	if v := getenv("SESSION_REPLICAS"); v != "" && (c.Replicas < 1 || c.Replicas > 5) {
		e.fail("SESSION_REPLICAS", v, "1 to 5")
	}
	c.MaxBytes = int64(e.int("SESSION_MAX_BYTES"))
	if v := getenv("SESSION_MAX_BYTES"); v != "" && c.MaxBytes != -1 && c.MaxBytes < minMaxBytes {
		e.fail("SESSION_MAX_BYTES", v, fmt.Sprintf("at least %d bytes, or -1 for no bound", minMaxBytes))
	}
	for key, on := range map[string]bool{"SESSION_SAME_SITE": c.Cookie.SameSite == http.SameSiteNoneMode, "SESSION_PARTITIONED_COOKIE": c.Cookie.Partitioned} {
		if on && !c.Cookie.Secure {
			e.fail(key, getenv(key), "SESSION_SECURE_COOKIE=true with it: browsers require Secure")
		}
	}
	return c, e.err
}

// envReader parses variables and keeps the first error.
type envReader struct {
	getenv func(string) string
	err    error
}

func (e *envReader) fail(key, v, want string) {
	if e.err == nil {
		e.err = fmt.Errorf("%w: %s=%q: want %s", ErrConfig, key, v, want)
	}
}

// minutes reads a plain number as minutes (Laravel's unit) or a Go
// duration.
func (e *envReader) minutes(key string) time.Duration {
	v := strings.TrimSpace(e.getenv(key))
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if n, nerr := strconv.Atoi(v); nerr == nil {
		d, err = time.Duration(n)*time.Minute, nil
		if n <= 0 || n > int(maxLifetime/time.Minute) {
			err = strconv.ErrRange
		}
	}
	if err != nil || d <= 0 || d > maxLifetime {
		e.fail(key, v, "a positive number of minutes (120) or a duration (2h), at most 100 years")
		return 0
	}
	return d
}

func (e *envReader) bool(key string) bool {
	v, _ := e.optionalBool(key)
	return v
}

// optionalBool reads a boolean; set is false when the variable is empty
// or "null" (Laravel's .env for "not set").
func (e *envReader) optionalBool(key string) (v, set bool) {
	switch v := strings.ToLower(strings.TrimSpace(e.getenv(key))); v {
	case "", "null":
		return false, false
	case "0", "false", "no", "off":
		return false, true
	case "1", "true", "yes", "on":
		return true, true
	default:
		e.fail(key, v, "true or false")
		return false, false
	}
}

// prefixes reads a comma-separated list of CIDR prefixes or single
// addresses (a /32 or /128).
func (e *envReader) prefixes(key string) []netip.Prefix {
	var out []netip.Prefix
	for _, part := range strings.Split(e.getenv(key), ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		p, err := parsePrefix(part)
		if err != nil {
			e.fail(key, part, "CIDR prefixes or IP addresses, comma-separated (10.0.0.0/8,127.0.0.1)")
			return nil
		}
		out = append(out, p)
	}
	return out
}

// parsePrefix reads a CIDR prefix, or an address as the prefix of itself.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (e *envReader) int(key string) int {
	v := strings.TrimSpace(e.getenv(key))
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.fail(key, v, "an integer")
	}
	return n
}

func (e *envReader) sameSite(key string) http.SameSite {
	switch v := strings.ToLower(strings.TrimSpace(e.getenv(key))); v {
	case "", "lax", "null":
		return 0 // New's default: Lax
	case "strict":
		return http.SameSiteStrictMode
	case "none":
		return http.SameSiteNoneMode
	default:
		e.fail(key, v, "lax, strict or none")
		return 0
	}
}
