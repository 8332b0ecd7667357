package node_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/mariadbtest"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/node"
)

// Noted is the job the sticky test's route dispatches after its write.
type Noted struct {
	ID int64 `json:"id"`
}

func (Noted) Kind() string { return "noted" }

// TestARequestThatWroteReadsThePrimaryAndHandsItsTokenToItsJobs: in a
// node with a MariaDB primary and replica, a request that only reads goes
// to the replica; one that wrote reads from the primary for the rest of
// the request (DB_STICKY), and the job it dispatches carries the write's
// causal token, with no code of the app's.
func TestARequestThatWroteReadsThePrimaryAndHandsItsTokenToItsJobs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a MariaDB primary and replica")
	}
	pair := mariadbtest.Start(t)
	db := pair.NewDatabase(t)
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	env := map[string]string{"JETFLEET_DATA": t.TempDir(), "DB_MAX_REPLICA_LAG": "1h"}
	for _, kv := range pair.Env(db) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	app := node.App{
		Name:       "sticky",
		Migrations: fstest.MapFS{"mysql/001_notes.sql": {Data: []byte("CREATE TABLE notes (id BIGINT AUTO_INCREMENT PRIMARY KEY, title VARCHAR(50) NOT NULL);")}},
		Routes: func(s *node.Services, mux *http.ServeMux) {
			mux.HandleFunc("GET /server", func(w http.ResponseWriter, r *http.Request) {
				var id int
				if err := s.DB.Get(r.Context(), &id, "SELECT @@server_id"); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				_ = json.NewEncoder(w).Encode(map[string]any{"server": id})
			})
			mux.HandleFunc("POST /notes", func(w http.ResponseWriter, r *http.Request) {
				res, err := s.DB.Exec(r.Context(), "INSERT INTO notes (title) VALUES ('one')")
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				note, _ := res.LastInsertId()
				var id int
				if err := s.DB.Get(r.Context(), &id, "SELECT @@server_id"); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				job, err := s.Dispatcher.Dispatch(r.Context(), Noted{ID: note})
				if err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
				_ = json.NewEncoder(w).Encode(map[string]any{"server": id, "job": job})
			})
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.Open(ctx, app, node.Config{Conn: nc, Migrate: true, Getenv: func(k string) string { return env[k] }})
	if err != nil {
		t.Fatal(err)
	}
	base := serveForTest(t, ctx, cancel, n)

	deadline := time.Now().Add(30 * time.Second)
	for call(t, "GET", base+"server")["server"] != 2.0 { // the replica, once it is in the pool
		if time.Now().After(deadline) {
			t.Fatal("a request that only reads never went to the replica (server_id 2)")
		}
		time.Sleep(100 * time.Millisecond)
	}
	got := call(t, "POST", base+"notes")
	if got["server"] != 1.0 {
		t.Errorf("a read after the request's write went to server %v, want the primary (1)", got["server"])
	}
	id, _ := got["job"].(string)
	in, err := bus.NewInspector(n.Services().JetStream, bus.Config{})
	if err != nil {
		t.Fatal(err)
	}
	job, err := in.Job(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if tok := job.Headers[bus.HeaderCausalToken]; !strings.Contains(tok, "-1-") {
		t.Errorf("the job dispatched after the write has %s %q, want the write's GTID (domain-1-seq)", bus.HeaderCausalToken, tok)
	}
}

// call sends a request without a body and decodes the JSON answer.
func call(t *testing.T, method, url string) map[string]any {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %s, %v", method, url, resp.Status, err)
	}
	return out
}

// serveForTest serves n's web node on a loopback port until the test ends
// (cancel stops it; a drain that fails is a test error) and returns its
// base URL.
func serveForTest(t *testing.T, ctx context.Context, cancel context.CancelFunc, n *node.Node) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- n.Serve(ctx, node.ServeConfig{Listener: ln, DrainDelay: -1}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
		n.Close()
	})
	return node.HTTPURL(ln.Addr())
}
