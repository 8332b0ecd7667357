package node

// The bounds of a node's HTTP servers (the web node, the metrics listener,
// `jetfleet up`): how long a client may take to send a request, to read
// the response and to sit idle, and how many connections are open at once.
// Without them, one client sending a byte every few seconds holds a
// request, and a few hundred hold as many descriptors.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of HTTPLimits.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 60 * time.Second
	DefaultWriteTimeout      = 2 * time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxConns          = 4096
	DefaultMinUploadRate     = 64 << 10 // bytes per second
)

// HTTPLimits bound an HTTP server of a node. Each zero field means its
// default; a negative duration or MaxConns means none.
type HTTPLimits struct {
	// ReadHeaderTimeout bounds reading a request's header
	// (JETFLEET_HTTP_READ_HEADER_TIMEOUT). Default 10s.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, header and body
	// (JETFLEET_HTTP_READ_TIMEOUT). A handler that takes large uploads
	// gets more with AllowUpload. Default 60s.
	ReadTimeout time.Duration
	// WriteTimeout bounds a request from the end of its header to the end
	// of its response: the handler's work and the client's reading
	// (JETFLEET_HTTP_WRITE_TIMEOUT). Default 2m.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that waits this long for
	// its next request (JETFLEET_HTTP_IDLE_TIMEOUT). Default 2m.
	IdleTimeout time.Duration
	// MaxConns caps the connections the server holds open at once
	// (JETFLEET_HTTP_MAX_CONNS). Connections over the cap wait, unaccepted,
	// in the kernel's listen queue (they hold no descriptor of the
	// process) until one closes; when that queue is full, the kernel
	// refuses them. Default 4096.
	MaxConns int
	// MinUploadRate is the slowest upload AllowUpload makes room for, in
	// bytes per second (JETFLEET_HTTP_MIN_UPLOAD_RATE). Default 64 KiB/s.
	MinUploadRate int64
}

// withDefaults fills zero fields with the defaults and turns "none"
// (negative) into the zero http.Server reads as none.
func (l HTTPLimits) withDefaults() HTTPLimits {
	l.ReadHeaderTimeout = orNone(l.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	l.ReadTimeout = orNone(l.ReadTimeout, DefaultReadTimeout)
	l.WriteTimeout = orNone(l.WriteTimeout, DefaultWriteTimeout)
	l.IdleTimeout = orNone(l.IdleTimeout, DefaultIdleTimeout)
	l.MaxConns = orNone(l.MaxConns, DefaultMaxConns)
	if l.MinUploadRate <= 0 {
		l.MinUploadRate = DefaultMinUploadRate
	}
	return l
}

// orNone is def for zero, 0 (none) for a negative v, else v.
func orNone[T time.Duration | int](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// HTTPLimitsFromEnv reads JETFLEET_HTTP_READ_HEADER_TIMEOUT,
// JETFLEET_HTTP_READ_TIMEOUT, JETFLEET_HTTP_WRITE_TIMEOUT and
// JETFLEET_HTTP_IDLE_TIMEOUT (a duration such as 30s, or seconds; 0 for
// none), JETFLEET_HTTP_MAX_CONNS (0 for no cap) and
// JETFLEET_HTTP_MIN_UPLOAD_RATE (bytes per second). Unset variables leave
// the defaults; a malformed one is an error naming it.
func HTTPLimitsFromEnv(getenv func(string) string) (HTTPLimits, error) {
	var l HTTPLimits
	durations := []struct {
		key string
		dst *time.Duration
	}{
		{"JETFLEET_HTTP_READ_HEADER_TIMEOUT", &l.ReadHeaderTimeout},
		{"JETFLEET_HTTP_READ_TIMEOUT", &l.ReadTimeout},
		{"JETFLEET_HTTP_WRITE_TIMEOUT", &l.WriteTimeout},
		{"JETFLEET_HTTP_IDLE_TIMEOUT", &l.IdleTimeout},
	}
	for _, d := range durations {
		v, err := envDuration(getenv, d.key)
		if err != nil {
			return l, err
		}
		*d.dst = v
	}
	if v := strings.TrimSpace(getenv("JETFLEET_HTTP_MAX_CONNS")); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return l, fmt.Errorf("JETFLEET_HTTP_MAX_CONNS=%q: want a number of connections, or 0 for no cap", v)
		}
		l.MaxConns = cmp.Or(n, -1)
	}
	if v := strings.TrimSpace(getenv("JETFLEET_HTTP_MIN_UPLOAD_RATE")); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return l, fmt.Errorf("JETFLEET_HTTP_MIN_UPLOAD_RATE=%q: want a positive number of bytes per second", v)
		}
		l.MinUploadRate = n
	}
	return l, nil
}

// envDuration reads key as a duration or seconds: 0 for unset, -1 (none)
// for "0".
func envDuration(getenv func(string) string, key string) (time.Duration, error) {
	v := strings.TrimSpace(getenv(key))
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if n, nerr := strconv.Atoi(v); nerr == nil {
		d, err = time.Duration(n)*time.Second, nil
		if n > math.MaxInt64/int(time.Second) { // would wrap around
			err = errors.New("too large")
		}
	}
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a duration such as 30s (or seconds), or 0 for none", key, v)
	}
	return cmp.Or(d, -1), nil
}

// limitsKey is the context key of the limits of the server a request came
// through.
type limitsKey struct{}

// newHTTPServer is an http.Server for h bounded by limits (defaults
// applied), whose requests carry the limits for AllowUpload.
func newHTTPServer(h http.Handler, limits HTTPLimits) *http.Server {
	limits = limits.withDefaults()
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: limits.ReadHeaderTimeout,
		ReadTimeout:       limits.ReadTimeout,
		WriteTimeout:      limits.WriteTimeout,
		IdleTimeout:       limits.IdleTimeout,
		BaseContext: func(net.Listener) context.Context {
			return context.WithValue(context.Background(), limitsKey{}, limits)
		},
	}
}

// AllowUpload gives a handler that reads a large request body (an upload
// of up to maxBytes) time in proportion to its size, beyond the server's
// ReadTimeout: the request's read deadline becomes now + ReadTimeout + n /
// MinUploadRate, where n is the body's declared length (Content-Length)
// capped at maxBytes, or maxBytes when none is declared; the write
// deadline moves by as much, so the response can still be written after
// it. Call it before reading the body, but only once the request is one
// to read (its caller authenticated and allowed, an upload slot taken):
// a handler that refuses a request after AllowUpload leaves its unread
// body to be drained under the longer deadline. A body larger than
// maxBytes must still be refused by the handler (http.MaxBytesReader).
// The limits are those of the node's server the request came through
// (the defaults elsewhere). It returns http.ErrNotSupported (wrapped)
// when the connection takes no deadlines.
func AllowUpload(w http.ResponseWriter, r *http.Request, maxBytes int64) error {
	limits, ok := r.Context().Value(limitsKey{}).(HTTPLimits)
	if !ok {
		limits = HTTPLimits{}.withDefaults()
	}
	n := maxBytes
	if r.ContentLength >= 0 && r.ContentLength < n {
		n = r.ContentLength
	}
	secs := min(float64(max(n, 0))/float64(limits.MinUploadRate), maxAllowance.Seconds())
	allowance := time.Duration(secs * float64(time.Second))
	now := time.Now()
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(deadline(now, limits.ReadTimeout, allowance)); err != nil {
		return fmt.Errorf("node: AllowUpload: %w", err)
	}
	if err := rc.SetWriteDeadline(deadline(now, limits.WriteTimeout, allowance)); err != nil {
		return fmt.Errorf("node: AllowUpload: %w", err)
	}
	return nil
}

// maxAllowance caps what AllowUpload adds, whatever maxBytes says.
const maxAllowance = 24 * time.Hour

// deadline is now + timeout + allowance, or none (zero) when timeout is
// none.
func deadline(now time.Time, timeout, allowance time.Duration) time.Time {
	if timeout <= 0 {
		return time.Time{}
	}
	return now.Add(timeout + allowance)
}

// limitListener accepts at most cap connections at once: Accept waits
// for one of them to close before it takes the next from the kernel.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
}

// limitConns returns ln capped at n connections, or ln when n is 0 (none).
func limitConns(ln net.Listener, n int) net.Listener {
	if n <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, slots: make(chan struct{}, n), closed: make(chan struct{})}
}

// Accept waits for a free slot, then accepts a connection that frees its
// slot when closed.
func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.slots }}, nil
}

// Close closes the listener and ends an Accept waiting for a slot.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// limitConn gives its listener's slot back when it is closed.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

// Close closes the connection and frees its slot once.
func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
