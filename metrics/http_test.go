package metrics_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jetfleet/jetfleet/internal/promtest"
	"github.com/jetfleet/jetfleet/metrics"
)

// TestHTTPMetricsUseRoutePatterns serves a real mux through the middleware:
// requests are counted by the mux's pattern and status, never by raw path;
// an unmatched path is "unmatched"; the draining gauge follows its func.
func TestHTTPMetricsUseRoutePatterns(t *testing.T) {
	reg := metrics.NewRegistry()
	var draining atomic.Bool
	h, err := metrics.NewHTTP(reg, metrics.HTTPConfig{Draining: draining.Load})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "404" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("item"))
	})
	mux.Handle("GET /metrics", metrics.Handler(reg))
	srv := httptest.NewServer(h.Middleware(mux))
	defer srv.Close()
	for _, p := range []string{"/items/1", "/items/2", "/items/404", "/nothing/here"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	draining.Store(true)
	f, err := promtest.Scrape(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		match []string
		want  float64
	}{
		{[]string{"route", "GET /items/{id}", "code", "200"}, 2},
		{[]string{"route", "GET /items/{id}", "code", "404"}, 1},
		{[]string{"route", "unmatched", "code", "404"}, 1},
	}
	for _, c := range checks {
		if got := f.Sum("jetfleet_http_requests_total", c.match...); got != c.want {
			t.Errorf("jetfleet_http_requests_total%v = %v, want %v", c.match, got, c.want)
		}
	}
	for _, route := range f.Labels("jetfleet_http_requests_total", "route") {
		if strings.Contains(route, "/items/1") || strings.Contains(route, "/nothing") {
			t.Errorf("a raw path became a label: %q", route)
		}
	}
	if got := f.Sum("jetfleet_http_request_duration_seconds", "route", "GET /items/{id}"); got != 3 {
		t.Errorf("latency observations = %v, want 3", got)
	}
	// The scrape itself is in flight while it is served.
	if got := f.Sum("jetfleet_http_requests_in_flight"); got != 1 {
		t.Errorf("in flight during the scrape = %v, want 1", got)
	}
	if got := f.Sum("jetfleet_http_draining"); got != 1 {
		t.Errorf("draining = %v, want 1", got)
	}
}
