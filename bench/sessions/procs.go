package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/nats-io/nats.go"
)

// startNATS builds cmd/jetfleet and runs `jetfleet nats` on a free loopback
// port with a private store, as its own process.
func startNATS(ctx context.Context) (url string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "bench-sessions-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	bin := filepath.Join(dir, "jetfleet")
	root, err := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "github.com/jetfleet/jetfleet").Output()
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("find the jetfleet checkout: %w", err)
	}
	// Built in jetfleet's own module, with its own go.sum.
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/jetfleet")
	build.Dir = strings.TrimSpace(string(root))
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("build jetfleet: %w", err)
	}
	port, err := freePort()
	if err != nil {
		cleanup()
		return "", nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin, "nats", "--listen", addr, "--data", filepath.Join(dir, "data"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("start jetfleet nats: %w", err)
	}
	stop = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		cleanup()
	}
	url = "nats://" + addr
	if err := waitFor(30*time.Second, func() error {
		nc, err := nats.Connect(url)
		if err == nil {
			nc.Close()
		}
		return err
	}); err != nil {
		stop()
		return "", nil, fmt.Errorf("jetfleet nats on %s: %w", addr, err)
	}
	return url, stop, nil
}

// ensureRedis returns addr when a Redis answers there, or starts a private
// redis-server (no persistence) on a free loopback port.
func ensureRedis(ctx context.Context, addr string) (string, func(), error) {
	if ping(addr) == nil {
		return addr, func() {}, nil
	}
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.CommandContext(ctx, "redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("no Redis on %s, and redis-server did not start: %w", addr, err)
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	own := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitFor(10*time.Second, func() error { return ping(own) }); err != nil {
		stop()
		return "", nil, fmt.Errorf("redis-server on %s: %w", own, err)
	}
	return own, stop, nil
}

func ping(addr string) error {
	c, err := redis.Dial("tcp", addr, redis.DialConnectTimeout(time.Second))
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Do("PING")
	return err
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitFor(limit time.Duration, try func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := try()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
