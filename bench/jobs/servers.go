package jobs

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func newSystem(ctx context.Context, name string, cfg Config) (system, error) {
	switch name {
	case "jetfleet":
		return newJetfleet(ctx, cfg)
	case "jetfleet-lib":
		return newJetfleetLib(ctx, cfg)
	case "jetstream":
		return newRaw(ctx, cfg)
	case "asynq":
		return newAsynq(ctx, cfg)
	case "river":
		return newRiver(ctx, cfg)
	}
	return nil, fmt.Errorf("unknown system %q (jetfleet, jetfleet-lib, jetstream, asynq, river)", name)
}

// Worker runs one worker process of a peer: `worker <jetstream|asynq|river>
// [-url|-redis|-pg ...] -c C`, until SIGTERM.
func Worker(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("worker: which system?")
	}
	fs := flag.NewFlagSet("worker "+args[0], flag.ContinueOnError)
	url := fs.String("url", "", "NATS URL")
	redis := fs.String("redis", "", "Redis address")
	pg := fs.String("pg", "", "PostgreSQL DSN")
	c := fs.Int("c", 16, "concurrency")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "jetstream":
		return rawWorker(ctx, *url, *c)
	case "jetfleet-lib":
		return libWorker(ctx, *url, *c)
	case "asynq":
		return asynqWorker(ctx, *redis, *c)
	case "river":
		return riverWorker(ctx, *pg, *c)
	}
	return fmt.Errorf("worker: unknown system %q", args[0])
}

// Server is a server process the benchmark started.
type Server struct {
	cmd *exec.Cmd
	dir string
}

// Stop ends the server and removes its files.
func (s *Server) Stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
	_ = os.RemoveAll(s.dir)
}

// FreePort is a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitPort(ctx context.Context, port int) error {
	for range 300 {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("nothing listens on 127.0.0.1:%d", port)
}

// StartNATS starts `jetfleet nats` nodes on loopback: one alone (nodes 1),
// or a cluster. syncInterval is --sync-interval ("" for the default). It
// returns the client URLs.
func StartNATS(ctx context.Context, jetfleet string, nodes int, syncInterval string) ([]*Server, []string, error) {
	var servers []*Server
	var urls, routes []string
	var clusterPorts, clientPorts []int
	for range nodes {
		cp, err := FreePort()
		if err != nil {
			return nil, nil, err
		}
		rp, err := FreePort()
		if err != nil {
			return nil, nil, err
		}
		clientPorts, clusterPorts = append(clientPorts, cp), append(clusterPorts, rp)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", rp))
	}
	for i := range nodes {
		dir, err := os.MkdirTemp("", "jfbench-nats-")
		if err != nil {
			return nil, nil, err
		}
		args := []string{"nats", "--listen", fmt.Sprintf("127.0.0.1:%d", clientPorts[i]), "--store", filepath.Join(dir, "store")}
		if nodes > 1 {
			args = append(args, "--name", fmt.Sprintf("n%d", i+1), "--cluster-listen", fmt.Sprintf("127.0.0.1:%d", clusterPorts[i]),
				"--routes", strings.Join(routes, ","))
		}
		if syncInterval != "" {
			args = append(args, "--sync-interval", syncInterval)
		}
		cmd := exec.Command(jetfleet, args...)
		cmd.Dir = dir
		log, _ := os.Create(filepath.Join(dir, "nats.log"))
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			return nil, nil, err
		}
		servers = append(servers, &Server{cmd: cmd, dir: dir})
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
	}
	for _, p := range clientPorts {
		if err := waitPort(ctx, p); err != nil {
			return servers, nil, err
		}
	}
	return servers, urls, nil
}

// StartRedis starts a redis-server of its own on a free loopback port,
// with the extra arguments (e.g. --appendonly yes --appendfsync always),
// in a temporary directory.
func StartRedis(ctx context.Context, extra ...string) (*Server, string, error) {
	port, err := FreePort()
	if err != nil {
		return nil, "", err
	}
	dir, err := os.MkdirTemp("", "jfbench-redis-")
	if err != nil {
		return nil, "", err
	}
	args := append([]string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--dir", dir, "--save", ""}, extra...)
	cmd := exec.Command("redis-server", args...)
	log, _ := os.Create(filepath.Join(dir, "redis.log"))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	s := &Server{cmd: cmd, dir: dir}
	if err := waitPort(ctx, port); err != nil {
		s.Stop()
		return nil, "", err
	}
	return s, fmt.Sprintf("127.0.0.1:%d", port), nil
}
