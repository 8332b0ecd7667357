package metrics_test

import (
	"context"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/promtest"
	"github.com/jetfleet/jetfleet/metrics"
	"github.com/jetfleet/jetfleet/workers"
)

// env is a real NATS server with the jetfleet topology, a registry served
// on a real HTTP server, and the job metrics.
type env struct {
	js   jetstream.JetStream
	reg  *prometheus.Registry
	jobs *metrics.Jobs
	url  string // the /metrics endpoint
}

func newEnv(t *testing.T, queues ...string) *env {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	if err := bus.ProvisionQueues(context.Background(), js, bus.Config{}, queues...); err != nil {
		t.Fatal(err)
	}
	reg := metrics.NewRegistry()
	jobs, err := metrics.NewJobs(reg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(metrics.Handler(reg))
	t.Cleanup(hs.Close)
	return &env{js: js, reg: reg, jobs: jobs, url: hs.URL}
}

// scrape reads the endpoint, failing the test when it cannot.
func (e *env) scrape(t *testing.T) promtest.Families {
	t.Helper()
	f, err := promtest.Scrape(e.url)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// waitFor scrapes until cond holds, for at most a minute.
func (e *env) waitFor(t *testing.T, what string, cond func(promtest.Families) bool) promtest.Families {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		f := e.scrape(t)
		if cond(f) {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within a minute; families:\n%s", what, f)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// run starts w until the test ends.
func run(t *testing.T, w *workers.Worker) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := w.Run(ctx); err != nil {
			t.Errorf("worker: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}
