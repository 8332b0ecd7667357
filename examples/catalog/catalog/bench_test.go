package catalog_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
	"github.com/jetfleet/jetfleet/internal/mariadbtest"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/sessions"
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

// BenchmarkItemVsStatic measures GET /items/{id} with a session (the
// session middleware, the catalog's middleware, two reads of the read
// model, JSON) beside a static handler on the same server, in one run:
// each round sends a burst of requests from parallel clients to one route
// then the other, the first route alternating. It reports both rates and
// item/static (target >= 0.3). Run:
//
//	go test -run '^$' -bench ItemVsStatic -benchtime 20x ./examples/catalog/catalog
func BenchmarkItemVsStatic(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) { itemVsStatic(b, startApp(b, false)) })
	b.Run("mariadb-replica", func(b *testing.B) {
		if err := mariadbtest.Available(); err != nil {
			b.Skip(err)
		}
		p := mariadbtest.Start(b)
		cfg := readmodel.Config{Driver: readmodel.DriverMySQL, WriteHost: p.Primary.Addr(), ReadHosts: []string{p.Replica.Addr()},
			Database: p.NewDatabase(b), Username: mariadbtest.AppUser, Password: p.Password}
		itemVsStatic(b, startAppOn(b, cfg, false))
	})
}

func itemVsStatic(b *testing.B, a *app) {
	sm, err := sessions.New(a.js, sessions.Config{})
	if err != nil {
		b.Fatal(err)
	}
	app := http.NewServeMux()
	a.cat.Routes(app, sm)
	mux := http.NewServeMux()
	mux.Handle("GET /static", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"id":1,"name":"Lamp"}`)
	}))
	mux.Handle("/", sm.Middleware(app))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	c := ct.NewClient(b, srv.URL)
	c.Login("bench")
	it := c.CreateItem("Lamp", "brass")
	item := fmt.Sprintf("/items/%d", it.ID)

	const clients, burst = 4, 500
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Jar: c.HTTP.Jar}
	run := func(path string) time.Duration {
		var wg sync.WaitGroup
		t0 := time.Now()
		for range clients {
			wg.Go(func() {
				for range burst / clients {
					resp, err := hc.Get(srv.URL + path)
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
		}
		wg.Wait()
		return time.Since(t0)
	}
	run(item) // warm up: connections, prepared statements, the session copy
	run("/static")
	var static, items time.Duration
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			static += run("/static")
			items += run(item)
		} else {
			items += run(item)
			static += run("/static")
		}
		i++
	}
	n := float64(b.N * burst)
	b.ReportMetric(n/static.Seconds(), "static-req/s")
	b.ReportMetric(n/items.Seconds(), "item-req/s")
	b.ReportMetric(static.Seconds()/items.Seconds(), "item/static")
}
