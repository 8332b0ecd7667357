package main

// The tests of this package build the catalog binary once (TestMain) and
// run `catalog migrate` and `catalog serve` as real processes against a NATS
// server of the test and a real MariaDB primary and replica.

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"

	ct "github.com/jetfleet/jetfleet/examples/catalog/catalog/catalogtest"
	"github.com/jetfleet/jetfleet/internal/mariadbtest"
	"github.com/jetfleet/jetfleet/internal/natsembed"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/proctest"
)

// binary is the catalog binary built by TestMain.
var binary string

func TestMain(m *testing.M) { proctest.Main(m, ".", "catalog", &binary) }

// webFarm is what `catalog serve` nodes stand on in these tests: a NATS
// server in the test process that can be stopped and started again on the
// same port and store, and a real MariaDB primary and replica with the
// catalog's schema applied by `catalog migrate`.
type webFarm struct {
	t       *testing.T
	natsCfg natsembed.Config
	nats    *natsembed.Server
	pair    *mariadbtest.Pair
	db      string
	env     []string
}

func newWebFarm(t *testing.T) *webFarm {
	f := &webFarm{t: t, pair: mariadbtest.Start(t)}
	f.db = f.pair.NewDatabase(t)
	f.natsCfg = natsembed.Config{Listen: fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(t, 1)[0]), StoreDir: t.TempDir()}
	f.startNATS()
	t.Cleanup(func() { f.nats.Shutdown() })
	// A paused replica stays in the read pool for an hour: reads that see
	// the paused writes anyway owe it to the causal token, nothing else.
	f.env = proctest.Env(append(f.pair.Env(f.db), "NATS_URL="+f.nats.ClientURL(), "DB_MAX_REPLICA_LAG=1h")...)
	if r := proctest.Run(t, binary, t.TempDir(), f.env, "", "migrate"); r.Code != 0 {
		t.Fatalf("migrate: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	return f
}

func (f *webFarm) startNATS() {
	srv, err := natsembed.Start(f.natsCfg)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := srv.JetStreamReady(30 * time.Second); err != nil {
		f.t.Fatal(err)
	}
	f.nats = srv
}

// serve starts a `catalog serve` node and returns it with its base URL.
func (f *webFarm) serve(args ...string) (*proctest.Proc, string) {
	addr := fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(f.t, 1)[0])
	p := proctest.Start(f.t, binary, f.t.TempDir(), f.env, append([]string{"serve", "--listen", addr}, args...)...)
	p.WaitFor(f.t, "web node serving", 60*time.Second)
	return p, "http://" + addr
}

// health is GET /up as JSON: the status code and the report.
type health struct {
	code     int
	Status   string                     `json:"status"`
	Degraded []string                   `json:"degraded"`
	Checks   map[string]json.RawMessage `json:"checks"`
}

func getUp(base string) (health, error) {
	var h health
	req, _ := http.NewRequest(http.MethodGet, base+"/up", nil)
	req.Header.Set("Accept", "application/json")
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	h.code = resp.StatusCode
	return h, json.NewDecoder(resp.Body).Decode(&h)
}

// waitUp polls /up until ok accepts the answer.
func waitUp(t *testing.T, base string, timeout time.Duration, what string, ok func(health) bool) health {
	t.Helper()
	var h health
	proctest.Eventually(t, timeout, what, func() error {
		var err error
		if h, err = getUp(base); err != nil || !ok(h) {
			return fmt.Errorf("/up: %d %+v (%v)", h.code, h, err)
		}
		return nil
	})
	return h
}

// TestServeTwoNodesCausalReads: two `catalog serve` nodes on one NATS and
// a MariaDB primary and replica whose replication is paused. A user logs in
// on node A, creates an item on node B, and reads it on node A at once: the
// session (NATS KV) and the item (causal token in the session, so A reads
// the primary) are both there, though the replica has neither. The same
// user on a second device, whose session carries no token, reads the stale
// replica: the consistency is the session's.
func TestServeTwoNodesCausalReads(t *testing.T) {
	f := newWebFarm(t)
	_, a := f.serve("--drain-delay", "0s")
	_, b := f.serve("--drain-delay", "0s")
	replica, err := sql.Open("mysql", f.pair.ReplicaDSN(f.db))
	if err != nil {
		t.Fatal(err)
	}
	defer replica.Close()

	f.pair.StopSQLThread(t)
	c := ct.NewClient(t, a)
	c.Login("ann")
	c.Base = b
	lamp := c.CreateItem("Lamp", "made on node B")
	c.Base = a
	if got := c.Item(lamp.ID, http.StatusOK); got.Name != "Lamp" || got.Owner != "ann" {
		t.Fatalf("node A read %+v", got)
	}
	var me struct{ User struct{ Name string } }
	c.JSON(http.MethodGet, "/me", nil, http.StatusOK, &me)
	if me.User.Name != "ann" {
		t.Fatalf("node A's /me: %+v", me)
	}
	var n int
	if err := replica.QueryRow("SELECT COUNT(*) FROM items WHERE id = ?", lamp.ID).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the paused replica has %d copies of the item (%v): the test proves nothing", n, err)
	}

	phone := ct.NewClient(t, a)
	phone.Login("ann") // no write: this session holds no token
	phone.Item(lamp.ID, http.StatusNotFound)

	f.pair.StartSQLThread(t)
	proctest.Eventually(t, 30*time.Second, "the second device sees the item once the replica catches up", func() error {
		resp, body := phone.Do(http.MethodGet, fmt.Sprintf("/items/%d", lamp.ID), nil, nil)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%d %s", resp.StatusCode, body)
		}
		return nil
	})
}

// TestServeUpEndpoint checks /up on the real binary: 200 normally; 200
// with db.replicas degraded while the replica is down; 200 with nats
// degraded within 2 s of the NATS server stopping, 503 once it has been
// gone for --nats-down-after, and 200 again once it is back; on SIGTERM 503
// at once while a slow upload already in flight still completes, and exit 0.
func TestServeUpEndpoint(t *testing.T) {
	f := newWebFarm(t)
	nodeA, a := f.serve("--drain-delay", "2s", "--grace", "20s", "--nats-down-after", "3s")
	agent := fmt.Sprintf("127.0.0.1:%d", natstest.FreePorts(t, 1)[0])
	_, b := f.serve("--drain-delay", "0s", "--agent-listen", agent)
	for _, base := range []string{a, b} {
		if h, err := getUp(base); err != nil || h.code != 200 || h.Status != "up" || len(h.Degraded) != 0 {
			t.Fatalf("%s/up: %d %+v (%v)", base, h.code, h, err)
		}
	}
	if line := agentLine(t, agent); !strings.HasPrefix(line, "ready up") {
		t.Fatalf("the agent check of node B said %q, want ready up", line)
	}

	f.pair.StopReplica(t, false)
	waitUp(t, a, 30*time.Second, "db.replicas degraded", func(h health) bool {
		return h.code == 200 && h.Status == "up" && strings.Join(h.Degraded, ",") == "db.replicas"
	})
	f.pair.StartReplica(t)
	waitUp(t, a, 30*time.Second, "replica back", func(h health) bool { return h.code == 200 && len(h.Degraded) == 0 })

	f.nats.Shutdown()
	stopped := time.Now()
	h := waitUp(t, a, 10*time.Second, "nats degraded", func(h health) bool { return slices.Contains(h.Degraded, "nats") })
	if took := time.Since(stopped); took > 2*time.Second || h.code != 200 {
		t.Fatalf("/up %d %s after NATS stopped, want 200 with nats degraded within 2s: %+v", h.code, took, h)
	}
	h = waitUp(t, a, 15*time.Second, "503 without NATS", func(h health) bool { return h.code == 503 })
	if took := time.Since(stopped); took < 3*time.Second || h.Status != "down" || !strings.Contains(string(h.Checks["nats"]), `"down"`) {
		t.Fatalf("/up answered 503 %s after NATS stopped (want after --nats-down-after 3s): %+v", took, h)
	}
	f.startNATS()
	waitUp(t, a, 30*time.Second, "200 with NATS back", func(h health) bool { return h.code == 200 })

	c := ct.NewClient(t, a)
	c.Login("ann")
	lamp := c.CreateItem("Lamp", "")
	upload := slowUpload(t, c, lamp.ID, 16, 200*time.Millisecond)
	<-upload.started
	if err := nodeA.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitUp(t, a, 2*time.Second, "503 draining after SIGTERM", func(h health) bool { return h.code == 503 && h.Status == "draining" })
	if res := <-upload.done; res.err != nil || res.code != http.StatusAccepted {
		t.Fatalf("the upload in flight during the drain: %d %s (%v)", res.code, res.body, res.err)
	}
	if !regexp.MustCompile(`requests in flight: [1-9]`).MatchString(nodeA.Stderr.String()) {
		t.Errorf("node A's drain log shows no request in flight:\n%s", nodeA.Stderr)
	}
	select {
	case <-nodeA.Done:
		if code := nodeA.Cmd.ProcessState.ExitCode(); code != 0 {
			t.Fatalf("node A exited %d after its drain, want 0", code)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("node A still running 30s after SIGTERM")
	}
	if h, err := getUp(b); err != nil || h.code != 200 {
		t.Fatalf("node B after A left: %d %v", h.code, err)
	}
}

// uploadResult is how a slow upload ended.
type uploadResult struct {
	code int
	body []byte
	err  error
}

type slowUploadRun struct {
	started chan struct{}     // closed once the first chunk is sent
	done    chan uploadResult // receives the response
}

// slowUpload posts a PNG padded to chunks×64 KiB (trailing bytes after
// the image's end are ignored by decoders), sending one chunk per pause.
func slowUpload(t *testing.T, c *ct.Client, itemID int64, chunks int, pause time.Duration) slowUploadRun {
	run := slowUploadRun{started: make(chan struct{}), done: make(chan uploadResult, 1)}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		part, _ := mw.CreateFormFile("images", "slow.png")
		part.Write(ct.PNG(64, 64))
		for i := range chunks {
			if _, err := part.Write(make([]byte, 64<<10)); err != nil {
				pw.CloseWithError(err)
				return
			}
			if i == 0 {
				time.Sleep(300 * time.Millisecond) // let the server start the request
				close(run.started)
			}
			time.Sleep(pause)
		}
		pw.CloseWithError(mw.Close())
	}()
	go func() {
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/items/%d/images", c.Base, itemID), pr)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		req.Header.Set("X-CSRF-Token", c.CSRF)
		resp, err := c.HTTP.Do(req)
		if err != nil {
			run.done <- uploadResult{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		run.done <- uploadResult{code: resp.StatusCode, body: b, err: err}
	}()
	return run
}

// agentLine reads the one line an HAProxy agent-check port answers.
func agentLine(t *testing.T, addr string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatalf("agent %s: %v", addr, err)
	}
	return strings.TrimSpace(string(b))
}
