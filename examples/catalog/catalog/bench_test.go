package catalog_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
	"github.com/jetfleet/jetfleet/internal/mariadbtest"
	"github.com/jetfleet/jetfleet/readmodel"
)

// BenchmarkHTTP measures GET /items/{id} with a session cookie through a
// real loopback server: each request loads the session from NATS KV,
// restores the causal token and reads the item and its images. "static"
// is a handler writing a fixed body on the same kind of server, measured in
// the same run: compare ns/op with it rather than with absolute figures.
func BenchmarkHTTP(b *testing.B) {
	b.Run("static", func(b *testing.B) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"id":1,"name":"Lamp"}`)
		}))
		defer srv.Close()
		benchGet(b, ct.NewClient(b, srv.URL), "/")
	})
	b.Run("item-sqlite", func(b *testing.B) {
		benchItem(b, startApp(b, false))
	})
	b.Run("item-mariadb-replica", func(b *testing.B) {
		if err := mariadbtest.Available(); err != nil {
			b.Skip(err)
		}
		p := mariadbtest.Start(b)
		cfg := readmodel.Config{Driver: readmodel.DriverMySQL, WriteHost: p.Primary.Addr(), ReadHosts: []string{p.Replica.Addr()},
			Database: p.NewDatabase(b), Username: mariadbtest.AppUser, Password: p.Password}
		benchItem(b, startAppOn(b, cfg, false))
	})
}

// benchItem logs in, creates an item and reads it repeatedly.
func benchItem(b *testing.B, a *app) {
	c := ct.NewClient(b, a.url)
	c.Login("bench")
	it := c.CreateItem("Lamp", "brass")
	benchGet(b, c, fmt.Sprintf("/items/%d", it.ID))
}

// benchGet runs GET path from parallel goroutines sharing c's cookies.
func benchGet(b *testing.B, c *ct.Client, path string) {
	tr := &http.Transport{MaxIdleConnsPerHost: 4 * runtime.GOMAXPROCS(0)}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Jar: c.HTTP.Jar}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := hc.Get(c.Base + path)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("GET %s: %d", path, resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}
