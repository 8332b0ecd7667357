package metrics_test

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/metrics"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/sessions"
)

// TestSessionMetrics drives a real session store: a first save, two
// concurrent requests on one session (the later save meets the earlier one:
// one conflict, a reload and a second try), then a request with NATS gone.
func TestSessionMetrics(t *testing.T) {
	e := newEnv(t)
	srv := natstest.Start(t)
	nc, js := natstest.Connect(t, srv.ClientURL())
	sm, err := metrics.NewSessions(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	m, err := sessions.NewContext(context.Background(), js, sessions.Config{Observe: sm.Observe})
	if err != nil {
		t.Fatal(err)
	}
	loaded, release := make(chan struct{}), make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/put/{key}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("key") == "slow" {
			loaded <- struct{}{}
			<-release
		}
		_ = sessions.Put(r.Context(), r.PathValue("key"), 1)
	})
	hs := httptest.NewServer(m.Middleware(mux))
	defer hs.Close()
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	get := func(path string) int {
		resp, err := client.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	get("/put/first") // new session: saved, nothing loaded
	done := make(chan int)
	go func() { done <- get("/put/slow") }()
	<-loaded
	get("/put/fast") // loads and saves while /put/slow holds the old revision
	close(release)
	<-done // its save conflicts, reloads, merges and saves
	f := e.scrape(t)
	for name, want := range map[string]float64{
		"jetfleet_session_saves_total":        3,
		"jetfleet_session_loads_total":        3,
		"jetfleet_session_conflicts_total":    1,
		"jetfleet_session_store_errors_total": 0,
	} {
		if got := f.Sum(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	nc.Close()
	if code := get("/put/gone"); code != http.StatusServiceUnavailable {
		t.Errorf("with NATS closed: status %d, want 503", code)
	}
	if got := e.scrape(t).Sum("jetfleet_session_store_errors_total"); got != 1 {
		t.Errorf("store errors = %v, want 1", got)
	}
}

// TestDBMetrics reads through a real SQLite read model: the read is counted
// by target and reason, and the primary's health is exposed.
func TestDBMetrics(t *testing.T) {
	e := newEnv(t)
	reads, err := metrics.NewDBReads(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	db, err := readmodel.Open(context.Background(), readmodel.Config{
		Database: filepath.Join(t.TempDir(), "m.db"), ObserveRead: reads.ObserveRead,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := metrics.RegisterDBMembers(e.reg, db.Members); err != nil {
		t.Fatal(err)
	}
	var n int
	for range 3 {
		if err := db.Get(context.Background(), &n, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	f := e.scrape(t)
	if got := f.Sum("jetfleet_db_reads_total", "target", "primary", "reason", "no_replica"); got != 3 {
		t.Errorf("reads on the primary = %v, want 3", got)
	}
	if got := f.Sum("jetfleet_db_member_up", "role", "primary"); got != 1 {
		t.Errorf("primary up = %v, want 1", got)
	}
	if got := f.Sum("jetfleet_db_member_in_pool", "role", "primary"); got != 1 {
		t.Errorf("primary in pool = %v, want 1", got)
	}
}
