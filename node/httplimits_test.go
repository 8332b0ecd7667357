package node_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/node"
)

// serveApp runs a web node of app with cfg on a loopback listener until
// the test ends, and returns its base URL.
func serveApp(t *testing.T, app node.App, cfg node.ServeConfig) string {
	t.Helper()
	srv := natstest.Start(t)
	nc, _ := natstest.Connect(t, srv.ClientURL())
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.Open(ctx, app, node.Config{Conn: nc, DataDir: t.TempDir(), Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listener, cfg.DrainDelay, cfg.Grace = ln, -1, time.Second
	done := make(chan error, 1)
	go func() { done <- n.Serve(ctx, cfg) }()
	t.Cleanup(func() { cancel(); <-done; n.Close() })
	return node.HTTPURL(ln.Addr())
}

// bodyApp has two routes that read the whole body and say how much they
// got: /plain as is, /upload after node.AllowUpload.
func bodyApp() node.App {
	count := func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestTimeout)
			return
		}
		fmt.Fprintf(w, "read %d bytes", n)
	}
	return node.App{Name: "bodies", Routes: func(_ *node.Services, mux *http.ServeMux) {
		mux.HandleFunc("POST /plain", count)
		mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
			if err := node.AllowUpload(w, r, 1<<20); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			count(w, r)
		})
	}}
}

// slowPost sends a request whose body of size bytes arrives in chunks
// every, then returns what the server answered, read until it closed the
// connection (or 60 s passed: a connection held that long is the failure).
func slowPost(t *testing.T, base, path string, size, chunks int, every time.Duration) (answer string, cut bool) {
	t.Helper()
	addr := strings.TrimSuffix(strings.TrimPrefix(base, "http://"), "/")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", path, size)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		chunk := strings.Repeat("x", size/chunks)
		for range chunks {
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
			if _, err := io.WriteString(c, chunk); err != nil {
				return
			}
		}
	}()
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return string(b), false
	}
	return string(b), true
}

// TestSlowBodyIsCutOff: a client that sends its body a byte every 2 s is
// cut off by the read timeout; a handler that called AllowUpload reads a
// slow upload whole, well past that timeout.
func TestSlowBodyIsCutOff(t *testing.T) {
	base := serveApp(t, bodyApp(), node.ServeConfig{HTTPLimits: node.HTTPLimits{
		ReadTimeout: time.Second, MinUploadRate: 3, // 30 bytes: 10 s more
	}})
	answer, cut := slowPost(t, base, "/plain", 1000, 1000, 2*time.Second)
	if !cut || strings.Contains(answer, "read 1000 bytes") {
		t.Fatalf("a body sent a byte every 2s was not cut off by a 1s read timeout; answer %q", answer)
	}
	answer, cut = slowPost(t, base, "/upload", 30, 3, 800*time.Millisecond)
	if !cut || !strings.Contains(answer, "200 OK") || !strings.Contains(answer, "read 30 bytes") {
		t.Fatalf("an upload within its allowance: answer %q", answer)
	}
}

// TestConnectionsOverTheCapWait: with MaxConns 5 and five idle clients
// holding them, more clients are not accepted (the server holds at most 5
// connection descriptors) and a request over the cap is not served until
// the idle ones go; then it is.
func TestConnectionsOverTheCapWait(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("counts the server's sockets in /proc")
	}
	const max = 5
	base := serveApp(t, node.App{Name: "capped"}, node.ServeConfig{HTTPLimits: node.HTTPLimits{MaxConns: max, ReadHeaderTimeout: -1, ReadTimeout: -1}})
	addr := strings.TrimSuffix(strings.TrimPrefix(base, "http://"), "/")
	_, port, _ := net.SplitHostPort(addr)
	var idle []net.Conn
	for range 50 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	got := make(chan error, 1)
	go func() {
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get(base + "up")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("GET /up: %s", resp.Status)
			}
		}
		got <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for n := acceptedSockets(t, port); n != max; n = acceptedSockets(t, port) {
		if n > max {
			t.Fatalf("the server holds %d connections, over its cap of %d", n, max)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the server accepted %d connections, want %d", n, max)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case err := <-got:
		t.Fatalf("a request over the cap was served while %d idle connections held it (%v)", max, err)
	default:
	}
	for _, c := range idle {
		c.Close()
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the request over the cap was not served once the idle connections closed")
	}
}

// acceptedSockets counts the established TCP sockets on local port that
// the process has accepted (those still in the listen queue have no
// inode yet), from /proc/self/net/tcp and tcp6.
func acceptedSockets(t *testing.T, port string) int {
	t.Helper()
	p, _ := strconv.Atoi(port)
	hexPort := fmt.Sprintf(":%04X", p)
	n := 0
	for _, file := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			if len(fields) > 9 && strings.HasSuffix(fields[1], hexPort) && fields[3] == "01" && fields[9] != "0" {
				n++
			}
		}
		f.Close()
	}
	return n
}

// TestHTTPLimitsFromEnv: durations as Go durations or seconds, 0 for none
// (a negative field), unset for the default (zero), and an error naming
// a malformed variable.
func TestHTTPLimitsFromEnv(t *testing.T) {
	env := map[string]string{
		"JETFLEET_HTTP_READ_HEADER_TIMEOUT": "5s", "JETFLEET_HTTP_READ_TIMEOUT": "90",
		"JETFLEET_HTTP_IDLE_TIMEOUT": "0", "JETFLEET_HTTP_MAX_CONNS": "0", "JETFLEET_HTTP_MIN_UPLOAD_RATE": "1000",
	}
	l, err := node.HTTPLimitsFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := node.HTTPLimits{ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 90 * time.Second, IdleTimeout: -1, MaxConns: -1, MinUploadRate: 1000}
	if l != want {
		t.Errorf("HTTPLimitsFromEnv = %+v, want %+v", l, want)
	}
	for key, v := range map[string]string{
		"JETFLEET_HTTP_WRITE_TIMEOUT": "soon", "JETFLEET_HTTP_READ_TIMEOUT": "-1s",
		"JETFLEET_HTTP_MAX_CONNS": "many", "JETFLEET_HTTP_MIN_UPLOAD_RATE": "0",
		"JETFLEET_HTTP_IDLE_TIMEOUT": "99999999999", // seconds: more than a duration holds
	} {
		_, err := node.HTTPLimitsFromEnv(func(k string) string { return map[string]string{key: v}[k] })
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s=%s: error %v, want one naming the variable", key, v, err)
		}
	}
}
