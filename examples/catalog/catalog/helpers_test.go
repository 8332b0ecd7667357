package catalog_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/examples/catalog/catalog"
	"github.com/jetfleet/jetfleet/examples/catalog/catalog/migrations"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/node"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/sessions"
	"github.com/jetfleet/jetfleet/workers"
)

// app is the catalog running in the test process on real servers: an
// embedded NATS node, an SQLite file, a loopback HTTP server and, when
// asked, a worker taking the catalog's jobs.
type app struct {
	url string
	js  jetstream.JetStream
	db  *readmodel.DB
	cat *catalog.Catalog
}

// startApp runs the catalog for the test on an SQLite file, with a worker
// when withWorker.
func startApp(t testing.TB, withWorker bool) *app {
	t.Helper()
	return startAppOn(t, readmodel.Config{Database: filepath.Join(t.TempDir(), "catalog.db")}, withWorker)
}

// startAppOn is startApp on the database of dbCfg.
func startAppOn(t testing.TB, dbCfg readmodel.Config, withWorker bool) *app {
	t.Helper()
	return startAppWith(t, dbCfg, catalog.Config{MaxUploadBytes: 1 << 20, MaxFiles: 3}, withWorker)
}

// startAppWith is startAppOn with the catalog's settings cfg.
func startAppWith(t testing.TB, dbCfg readmodel.Config, cfg catalog.Config, withWorker bool) *app {
	t.Helper()
	ctx := context.Background()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	if err := bus.ProvisionQueues(ctx, js, bus.Config{}, catalog.ImagesQueue, catalog.EmailsQueue); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, dbCfg)
	cat, url := serveCatalog(t, js, db, sessions.Config{}, cfg)
	if withWorker {
		runWorker(t, js, cat)
	}
	return &app{url: url, js: js, db: db, cat: cat}
}

// openDB opens the database of cfg, migrated, until the test ends.
func openDB(t testing.TB, cfg readmodel.Config) *readmodel.DB {
	t.Helper()
	db, err := readmodel.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := readmodel.Migrate(context.Background(), db, migrations.FS); err != nil {
		t.Fatal(err)
	}
	return db
}

// serveCatalog runs the catalog with sessions on a loopback HTTP server
// until the test ends and returns it with the server's URL.
func serveCatalog(t testing.TB, js jetstream.JetStream, db *readmodel.DB, scfg sessions.Config, cfg catalog.Config) (*catalog.Catalog, string) {
	t.Helper()
	sm, err := sessions.New(js, scfg)
	if err != nil {
		t.Fatal(err)
	}
	// As package node wires it: jobs carry the request's causal token.
	cfg.Bus.HeadersFromContext = append(cfg.Bus.HeadersFromContext, readmodel.JobHeaders)
	cat, err := catalog.New(context.Background(), js, db, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	cat.Routes(mux, sm)
	hs := httptest.NewServer(sm.Middleware(mux))
	t.Cleanup(hs.Close)
	return cat, hs.URL
}

// runWorker runs a worker of the catalog's queues until the test ends.
func runWorker(t testing.TB, js jetstream.JetStream, cat *catalog.Catalog) {
	ctx, cancel := context.WithCancel(context.Background())
	w := workers.New(js, workers.Config{Queues: []string{catalog.ImagesQueue, catalog.EmailsQueue}, Concurrency: 2,
		Middleware: []workers.Middleware{node.CausalJobs}}) // handlers read through the job's causal token, as under node
	cat.RegisterJobs(w)
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
}
