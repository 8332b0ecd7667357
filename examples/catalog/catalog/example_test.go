package catalog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/examples/catalog/catalog"
	"github.com/jetfleet/jetfleet/examples/catalog/catalog/migrations"
	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/sessions"
	"github.com/jetfleet/jetfleet/workers"
)

// The whole wiring of the app: a web node serves the catalog's routes
// inside the session middleware, a worker registers its jobs. In
// production they are `jetfleet serve` and `jetfleet work` processes; here
// both live in one process on an embedded NATS server and an SQLite file.
func Example() {
	ctx := context.Background()
	srv, err := natsembed.Start(natsembed.Config{}) // JetStream in memory, random port
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Shutdown()
	nc, _ := nats.Connect(srv.ClientURL())
	defer nc.Close()
	js, _ := jetstream.New(nc)
	bus.ProvisionQueues(ctx, js, bus.Config{}, catalog.ImagesQueue, catalog.EmailsQueue)

	dir, _ := os.MkdirTemp("", "catalog-example-")
	defer os.RemoveAll(dir)
	db, _ := readmodel.Open(ctx, readmodel.Config{Database: filepath.Join(dir, "catalog.db")})
	defer db.Close()
	readmodel.Migrate(ctx, db, migrations.FS)

	cat, err := catalog.New(ctx, js, db, catalog.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	// The web node.
	sm, _ := sessions.New(js, sessions.Config{})
	mux := http.NewServeMux()
	cat.Routes(mux, sm)
	web := httptest.NewServer(sm.Middleware(mux))
	defer web.Close()
	// A worker (w.Run(ctx) would start taking jobs).
	w := workers.New(js, workers.Config{Queues: []string{catalog.ImagesQueue, catalog.EmailsQueue}})
	cat.RegisterJobs(w)
	fmt.Println("worker kinds:", w.Kinds())

	// A client: log in, then create an item with the CSRF token it got.
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	resp, _ := client.Post(web.URL+"/login", "application/json", strings.NewReader(`{"name": "ann"}`))
	var login struct {
		Created   bool   `json:"created"`
		CSRFToken string `json:"csrf_token"`
	}
	json.NewDecoder(resp.Body).Decode(&login)
	resp.Body.Close()
	fmt.Println("login:", resp.Status, "created:", login.Created)

	req, _ := http.NewRequest(http.MethodPost, web.URL+"/items", strings.NewReader(`{"name": "Lamp"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(sessions.CSRFHeader, login.CSRFToken)
	resp, _ = client.Do(req)
	resp.Body.Close()
	fmt.Println("create:", resp.Status, resp.Header.Get("Location"))
	// Output:
	// worker kinds: [process-item-images send-welcome-email]
	// login: 200 OK created: true
	// create: 201 Created /items/1
}

// ConfigFromEnv reads the catalog's own settings, among them a worker's
// memory budget for image work; a bad value is an error naming it.
func ExampleConfigFromEnv() {
	env := map[string]string{"JETFLEET_IMAGE_MEMORY_MB": "512", "JETFLEET_MAX_UPLOAD_MB": "8"}
	cfg, err := catalog.ConfigFromEnv(func(k string) string { return env[k] })
	fmt.Println(cfg.ImageMemory>>20, cfg.MaxUploadBytes>>20, err)
	env["JETFLEET_IMAGE_MEMORY_MB"] = "lots"
	_, err = catalog.ConfigFromEnv(func(k string) string { return env[k] })
	fmt.Println(err)
	// Output:
	// 512 8 <nil>
	// catalog: JETFLEET_IMAGE_MEMORY_MB="lots" is not a whole number from 1 to 1073741824
}
