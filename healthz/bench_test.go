package healthz_test

import (
	"context"
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/healthz"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// BenchmarkUp measures /up (HTML and JSON, real NATS checks, default 1s
// cache) beside a static 200 handler on the same loopback server, with a
// keep-alive client from 4×GOMAXPROCS goroutines. static, up and up-json
// run one after the other and report req/s (the parent logs their ratios);
// interleaved mixes the three requests on every goroutine and reports /up
// as a percentage of static (target ≥ 80%), the figure to trust on a
// shared machine whose load changes between sub-benchmarks.
func BenchmarkUp(b *testing.B) {
	ns := natstest.Start(b)
	nc, js := natstest.Connect(b, ns.ClientURL())
	h := healthz.New(healthz.Config{},
		healthz.Check{Name: "nats", Critical: true, Timeout: checkTimeout, Run: natsCheck(nc, js)},
		healthz.Check{Name: "sessions", Critical: true, Run: func(ctx context.Context) error {
			_, err := js.AccountInfo(ctx)
			return err
		}},
	)
	mux := http.NewServeMux()
	h.Routes(mux)
	mux.HandleFunc("GET /static", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	base := serve(b, h.Track(mux))
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	b.Cleanup(client.CloseIdleConnections)

	rates := map[string]float64{}
	run := func(name, path, accept string) {
		b.Run(name, func(b *testing.B) {
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				req, _ := http.NewRequest(http.MethodGet, base+path, nil)
				if accept != "" {
					req.Header.Set("Accept", accept)
				}
				for pb.Next() {
					hit(b, client, req)
				}
			})
			rates[name] = float64(b.N) / b.Elapsed().Seconds()
			b.ReportMetric(rates[name], "req/s")
		})
	}
	run("static", "/static", "")
	run("up", "/up", "")
	run("up-json", "/up", "application/json")
	if rates["static"] > 0 && rates["up"] > 0 && rates["up-json"] > 0 {
		b.Logf("back to back: /up = %.0f%% of static (%.0f vs %.0f req/s); /up JSON = %.0f%%", 100*rates["up"]/rates["static"],
			rates["up"], rates["static"], 100*rates["up-json"]/rates["static"])
	}
	b.Run("interleaved", func(b *testing.B) { interleaved(b, client, base) })
}

// interleaved alternates static, /up and /up as JSON on every goroutine,
// so all three meet the same load from the rest of the machine, and reports
// each /up's throughput as a percentage of static's: with a fixed number of
// clients, throughput is inversely proportional to latency.
func interleaved(b *testing.B, client *http.Client, base string) {
	var ns [3]atomic.Int64 // static, up, up-json
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		var reqs [3]*http.Request
		for i, path := range []string{"/static", "/up", "/up?format=json"} {
			reqs[i], _ = http.NewRequest(http.MethodGet, base+path, nil)
		}
		for i := 0; pb.Next(); i = (i + 1) % 3 {
			began := time.Now()
			hit(b, client, reqs[i])
			ns[i].Add(int64(time.Since(began)))
		}
	})
	if ns[1].Load() > 0 && ns[2].Load() > 0 {
		b.ReportMetric(100*float64(ns[0].Load())/float64(ns[1].Load()), "up/static-%")
		b.ReportMetric(100*float64(ns[0].Load())/float64(ns[2].Load()), "json/static-%")
	}
}

func hit(b *testing.B, client *http.Client, req *http.Request) {
	resp, err := client.Do(req)
	if err != nil {
		b.Error(err) // not Fatal: this runs on a RunParallel goroutine
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Errorf("GET %s = %d", req.URL, resp.StatusCode)
	}
}
