package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/proctest"
)

// binary is the minimal example built by TestMain.
var binary string

func TestMain(m *testing.M) { proctest.Main(m, ".", "minimal", &binary) }

// TestMinimalServesSessionsAndRunsAJob runs the example as a user would:
// `minimal serve` and `minimal work` on one NATS server. /up reports NATS
// and the session bucket, a session counts one browser's visits (and only
// its own), and the job a visit dispatched is run by the worker process.
func TestMinimalServesSessionsAndRunsAJob(t *testing.T) {
	srv := natstest.Start(t)
	env := proctest.Env("NATS_URL=" + srv.ClientURL())
	addr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(t, 1)[0])
	web := proctest.Start(t, binary, t.TempDir(), env, "serve", "--listen", addr)
	web.WaitFor(t, "web node serving", 30*time.Second)
	worker := proctest.Start(t, binary, t.TempDir(), env, "work")
	worker.WaitFor(t, "worker started", 30*time.Second)
	base := "http://" + addr

	var up struct {
		Status string                     `json:"status"`
		Checks map[string]json.RawMessage `json:"checks"`
	}
	req, _ := http.NewRequest(http.MethodGet, base+"/up", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&up)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || up.Status != "up" || up.Checks["nats"] == nil || up.Checks["sessions"] == nil {
		t.Fatalf("/up: %d %+v, want 200 up with the nats and sessions checks", resp.StatusCode, up)
	}

	ann, bob := newBrowser(t), newBrowser(t)
	hello(t, ann, base, "ann", "visit 1")
	_, annJob := hello(t, ann, base, "ann", "visit 2")
	hello(t, bob, base, "bob", "visit 1") // bob's session is his own

	// Wait for ann's second job itself: her first one logs "hello, ann" too.
	worker.WaitFor(t, `"job_id":"`+annJob+`"`, 30*time.Second)
	if !hasLine(worker.Stderr.String(), `"job_id":"`+annJob+`"`, "hello, ann") {
		t.Errorf("the worker did not greet ann in her second job %s:\n%s", annJob, worker.Stderr)
	}
}

func newBrowser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, Timeout: 10 * time.Second}
}

var helloLine = regexp.MustCompile(`^(visit \d+), job (\S+)\n$`)

// hello posts to /hello and checks the visit count the session gave; it
// returns the answer and the ID of the job it dispatched.
func hello(t *testing.T, c *http.Client, base, name, wantVisit string) (string, string) {
	t.Helper()
	resp, err := c.PostForm(base+"/hello", url.Values{"name": {name}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := helloLine.FindStringSubmatch(string(body))
	if resp.StatusCode != http.StatusOK || m == nil || m[1] != wantVisit {
		t.Fatalf("POST /hello as %s: %d %q, want 200 %q and a job ID", name, resp.StatusCode, body, wantVisit)
	}
	return string(body), m[2]
}

// hasLine reports whether one line of log holds every one of parts.
func hasLine(log string, parts ...string) bool {
	for _, line := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}
