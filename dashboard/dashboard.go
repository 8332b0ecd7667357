// Package dashboard is jetfleet's operations page, what Horizon is to
// Laravel: at /jetfleet a web node shows jobs per minute, recent failures,
// every queue (ready, in flight, oldest wait, paused) with pause and resume,
// the live workers, a throughput chart of the last hour, the jobs by state
// (recent, running, ready, delayed, retrying, succeeded, cancelled, dead;
// by queue, kind and tag; by ID) with each job's progress, result, cancel
// and retry, the job kinds of the last hour (jobs per minute, run-time
// percentiles), and the failed jobs with their detail, retry, forget and
// retry-all. Pages are rendered on
// the server (the chart is inline SVG) and refresh their live part every few
// seconds with a tiny inline script; there is no JavaScript build step.
//
// Everything it shows comes from NATS (the JOBS and DLQ streams, the
// jetfleet KV buckets and the JETFLEET_SAMPLES stream that the workers'
// metrics.Sampler fills), so every node shows the same picture.
//
// Access: Config.Open serves it without credentials (`jetfleet up` on a
// developer's machine; package node opens it only on a loopback-only
// listener). Otherwise it is served only when a token
// (JETFLEET_DASHBOARD_TOKEN) or basic-auth credentials
// (JETFLEET_DASHBOARD_USER and _PASSWORD) are configured, and answers 404
// when none is; a token or password shorter than MinSecretLen characters
// is refused by New. A token is accepted as "Authorization: Bearer
// <token>", or once as ?token=<token>, which sets a cookie and redirects
// to the same page without it. A login cookie of an earlier token is a
// wrong guess too, and its 401 drops it, so that open tabs do not go on
// guessing with it. Wrong or missing credentials get 401; after
// 5 wrong guesses from one client address (an IPv6 /64), each further one
// locks that address out for twice as long as the last (1 s up to 15 min),
// and its attempts get 429 with Retry-After, unchecked. Every
// state-changing action is a POST carrying a CSRF token (403 without it).
package dashboard

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/metrics"
)

// Config configures the dashboard. Every zero field means its default.
type Config struct {
	// Prefix is where it is mounted, a path below "/". Default "/jetfleet".
	Prefix string
	// Token, when set, is accepted as a bearer token or ?token=
	// (JETFLEET_DASHBOARD_TOKEN). At least MinSecretLen characters.
	Token string
	// User and Password, when User is set, are accepted as basic-auth
	// credentials (JETFLEET_DASHBOARD_USER, JETFLEET_DASHBOARD_PASSWORD).
	// The password has at least MinSecretLen characters.
	User, Password string
	// Open serves the dashboard without credentials. Use it only where
	// the port is not reachable by others (`jetfleet up`). An open
	// dashboard answers only requests addressed to localhost or a
	// loopback address (their Host), so that a page elsewhere whose name
	// resolves to 127.0.0.1 (DNS rebinding) cannot use it.
	Open bool
	// Refresh is how often pages refresh their live part. Default 3s.
	Refresh time.Duration
	// PageSize is the number of failed jobs per page. Default 25.
	PageSize int
	// Bus holds the settings of the buckets the dashboard may create
	// (pausing a queue creates the pause bucket).
	Bus bus.Config
	// Logger receives the errors the pages show, and failed actions, at
	// warn or error level. The zero value logs nothing.
	Logger zerolog.Logger
}

// ConfigFromEnv reads JETFLEET_DASHBOARD_TOKEN, JETFLEET_DASHBOARD_USER and
// JETFLEET_DASHBOARD_PASSWORD through getenv (os.Getenv, usually). A user
// without a password, or a password without a user, is an error.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		Token:    strings.TrimSpace(getenv("JETFLEET_DASHBOARD_TOKEN")),
		User:     getenv("JETFLEET_DASHBOARD_USER"),
		Password: getenv("JETFLEET_DASHBOARD_PASSWORD"),
	}
	if (c.User == "") != (c.Password == "") {
		return c, errors.New("dashboard: set both JETFLEET_DASHBOARD_USER and JETFLEET_DASHBOARD_PASSWORD, or neither")
	}
	return c, nil
}

// Dashboard serves the pages. It is safe for concurrent use.
type Dashboard struct {
	js    jetstream.JetStream
	in    *bus.Inspector
	cfg   Config
	pages map[string]*pageTemplate
	// csrfKey signs CSRF tokens; derived from the credentials, so every
	// node configured alike accepts the others' tokens.
	csrfKey []byte

	// guesses slows down wrong credentials per client address.
	guesses *guesses

	chartMu sync.Mutex
	chartAt time.Time
	chart   []metrics.Bucket

	kindsMu sync.Mutex
	kindsAt time.Time
	kinds   []metrics.KindStat
}

// New returns the dashboard of the jetfleet system js reaches.
func New(js jetstream.JetStream, cfg Config) (*Dashboard, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = "/jetfleet"
	}
	cfg.Prefix = "/" + strings.Trim(cfg.Prefix, "/")
	if cfg.Prefix == "/" {
		return nil, errors.New("dashboard: Config.Prefix must name a path below / (default /jetfleet)")
	}
	if cfg.Refresh <= 0 {
		cfg.Refresh = 3 * time.Second
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 25
	}
	if (cfg.User == "") != (cfg.Password == "") {
		return nil, errors.New("dashboard: Config.User and Config.Password go together")
	}
	if err := checkSecret("Config.Token (JETFLEET_DASHBOARD_TOKEN)", cfg.Token); err != nil {
		return nil, err
	}
	if err := checkSecret("Config.Password (JETFLEET_DASHBOARD_PASSWORD)", cfg.Password); err != nil {
		return nil, err
	}
	in, err := bus.NewInspector(js, cfg.Bus)
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	d := &Dashboard{js: js, in: in, cfg: cfg, pages: pages, guesses: newGuesses(time.Now)}
	d.csrfKey = csrfKey(cfg)
	return d, nil
}

// checkSecret refuses a token or password (named by what) that is set
// but shorter than MinSecretLen; the error never shows the secret.
func checkSecret(what, secret string) error {
	if n := utf8.RuneCountInString(secret); secret != "" && n < MinSecretLen {
		return fmt.Errorf("dashboard: %s is %d characters; it must have at least %d (for example: openssl rand -base64 24)", what, n, MinSecretLen)
	}
	return nil
}

// csrfKey is derived from the credentials when there are any, else random
// (an open dashboard runs on one process).
func csrfKey(cfg Config) []byte {
	if cfg.Token == "" && cfg.User == "" {
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		return key
	}
	sum := sha256.Sum256([]byte("jetfleet dashboard csrf\x00" + cfg.Token + "\x00" + cfg.User + "\x00" + cfg.Password))
	return sum[:]
}

// Enabled reports whether the dashboard serves pages: it is Open or has
// credentials configured. A disabled dashboard answers 404.
func (d *Dashboard) Enabled() bool {
	return d.cfg.Open || d.cfg.Token != "" || d.cfg.User != ""
}

// Prefix is where the dashboard is mounted.
func (d *Dashboard) Prefix() string { return d.cfg.Prefix }

// Routes registers the dashboard's routes on mux, under Config.Prefix.
func (d *Dashboard) Routes(mux *http.ServeMux) {
	p := d.cfg.Prefix
	routes := map[string]http.HandlerFunc{
		"GET " + p:                             d.serveOverview,
		"GET " + p + "/{$}":                    d.serveOverview,
		"GET " + p + "/fragments/overview":     d.serveOverviewFragment,
		"GET " + p + "/failed":                 d.serveFailed,
		"GET " + p + "/fragments/failed":       d.serveFailedFragment,
		"GET " + p + "/failed/{id}":            d.serveJob,
		"POST " + p + "/failed/{id}/retry":     d.postRetry,
		"POST " + p + "/failed/{id}/forget":    d.postForget,
		"POST " + p + "/failed/retry-all":      d.postRetryAll,
		"POST " + p + "/queues/{queue}/pause":  d.postPause,
		"POST " + p + "/queues/{queue}/resume": d.postResume,
		"GET " + p + "/jobs":                   d.serveJobs,
		"GET " + p + "/fragments/jobs":         d.serveJobsFragment,
		"GET " + p + "/jobs/{id}":              d.serveJobPage,
		"GET " + p + "/fragments/jobs/{id}":    d.serveJobPageFragment,
		"POST " + p + "/jobs/{id}/cancel":      d.postCancel,
		"POST " + p + "/jobs/{id}/retry":       d.postJobRetry,
		"GET " + p + "/kinds":                  d.serveKinds,
		"GET " + p + "/fragments/kinds":        d.serveKindsFragment,
		p + "/":                                http.NotFound,
	}
	maps.Copy(routes, d.batchRoutes(p)) // batches.go
	for pattern, h := range routes {
		mux.Handle(pattern, d.guard(h))
	}
}
