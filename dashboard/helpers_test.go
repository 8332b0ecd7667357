package dashboard_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/dashboard"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/workers"
)

// env is a real NATS server with the jetfleet topology and a dashboard
// served by a real HTTP server.
type env struct {
	js  jetstream.JetStream
	in  *bus.Inspector
	d   *bus.Dispatcher
	url string // the server's base URL
}

func newEnv(t *testing.T, cfg dashboard.Config) *env {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := context.Background()
	if err := bus.ProvisionQueues(ctx, js, bus.Config{}, "high", "default"); err != nil {
		t.Fatal(err)
	}
	dash, err := dashboard.New(js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	dash.Routes(mux)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "the app") })
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	in, _ := bus.NewInspector(js, bus.Config{})
	d, _ := bus.NewDispatcher(js, bus.Config{})
	return &env{js: js, in: in, d: d, url: hs.URL}
}

// deadLetter makes n jobs of kind jetfleet-fail fail for good on queue with
// a real worker, and returns once they are all in DLQ.
func (e *env) deadLetter(t *testing.T, queue string, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := workers.New(e.js, workers.Config{Queues: []string{queue}, Tries: 1})
	workers.RegisterDiagnostics(w)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = w.Run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	before := e.failed(t, queue)
	for i := range n {
		msg := "boom " + string(rune('a'+i))
		if _, err := e.d.Dispatch(ctx, workers.Fail{Message: msg}, bus.OnQueue(queue)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "dead letters on "+queue, func() bool { return e.failed(t, queue) == before+n })
}

func (e *env) failed(t *testing.T, queue string) int {
	t.Helper()
	jobs, err := e.in.FailedJobs(context.Background(), bus.FailedFilter{Queue: queue})
	if err != nil {
		t.Fatal(err)
	}
	return len(jobs)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// browser is an HTTP client with cookies that does not follow redirects.
func browser(t *testing.T) *http.Client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// do sends a request and returns the status, body and response.
func do(t *testing.T, c *http.Client, method, u string, form url.Values, header ...string) (int, string, *http.Response) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf is the CSRF token in a page's forms.
func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfInput.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", page)
	}
	return m[1]
}
