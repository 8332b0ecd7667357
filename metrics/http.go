package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// HTTPConfig configures HTTP metrics. The zero value is ready to use.
type HTTPConfig struct {
	// Draining, when set, reports whether the node is draining
	// (healthz.Health.Draining), exposed as jetfleet_http_draining.
	Draining func() bool
}

// HTTP measures an http.Handler's requests. It is safe for concurrent use.
type HTTP struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

// routeUnmatched labels requests that matched no ServeMux pattern (404s and
// handlers not served by a ServeMux), so raw paths never become labels.
const routeUnmatched = "unmatched"

// httpBuckets span a millisecond to a minute, in seconds.
var httpBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// NewHTTP creates jetfleet_http_requests_total{route,code},
// jetfleet_http_request_duration_seconds{route},
// jetfleet_http_requests_in_flight and jetfleet_http_draining, and
// registers them on reg.
func NewHTTP(reg prometheus.Registerer, cfg HTTPConfig) (*HTTP, error) {
	h := &HTTP{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "jetfleet_http_requests_total", Help: "HTTP requests by ServeMux route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "jetfleet_http_request_duration_seconds", Help: "HTTP request latency by ServeMux route pattern.", Buckets: httpBuckets,
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "jetfleet_http_requests_in_flight", Help: "HTTP requests being served.",
		}),
	}
	draining := cfg.Draining
	if draining == nil {
		draining = func() bool { return false }
	}
	drainGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "jetfleet_http_draining", Help: "1 while the node drains (its /up answers 503).",
	}, func() float64 { return boolFloat(draining()) })
	if err := register(reg, h.requests, h.duration, h.inFlight, drainGauge); err != nil {
		return nil, err
	}
	return h, nil
}

// Middleware measures every request next serves. Wrap the ServeMux (or a
// handler around it that passes the same *http.Request on): the route label
// is the pattern the mux matched (r.Pattern, set by the mux on the request
// it was given), such as "GET /items/{id}", never the raw path.
func (h *HTTP) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.inFlight.Inc()
		began := time.Now()
		sw := &StatusWriter{ResponseWriter: w}
		defer func() {
			h.inFlight.Dec()
			route := r.Pattern
			if route == "" {
				route = routeUnmatched
			}
			code := sw.Status()
			h.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
			h.duration.WithLabelValues(route).Observe(time.Since(began).Seconds())
		}()
		next.ServeHTTP(sw, r)
	})
}

// StatusWriter records the status code a handler writes, for middleware
// that measures or traces responses. Wrap a ResponseWriter, serve, then read
// Status.
type StatusWriter struct {
	http.ResponseWriter
	code int
}

// WriteHeader records the first final status and passes it on.
func (w *StatusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200 and passes the bytes on.
func (w *StatusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush passes flushes on for streaming handlers.
func (w *StatusWriter) Flush() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Status is the status code written, 200 when the handler wrote none.
func (w *StatusWriter) Status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
