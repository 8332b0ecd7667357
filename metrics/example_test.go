package metrics_test

import (
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"

	"github.com/jetfleet/jetfleet/internal/promtest"
	"github.com/jetfleet/jetfleet/metrics"
)

// Measure a web node's requests by route and serve /metrics from the
// node's own registry.
func ExampleHTTP_Middleware() {
	reg := metrics.NewRegistry()
	httpm, err := metrics.NewHTTP(reg, metrics.HTTPConfig{})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /items/{id}", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "item") })
	mux.Handle("GET /metrics", metrics.Handler(reg))
	srv := httptest.NewServer(httpm.Middleware(mux))
	defer srv.Close()

	for _, id := range []string{"1", "2", "3"} {
		resp, err := http.Get(srv.URL + "/items/" + id)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
	}
	f, err := promtest.Scrape(srv.URL + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(f.Labels("jetfleet_http_requests_total", "route"))
	fmt.Println(f.Sum("jetfleet_http_requests_total", "route", "GET /items/{id}", "code", "200"))
	// Output:
	// [GET /items/{id}]
	// 3
}
