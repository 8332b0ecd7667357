package node_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/node"
)

// TestAsyncNATSErrorsAreLogLines: an asynchronous error of the node's NATS
// connection (here a slow consumer) is a JSON line of the node's log that
// names the subscription, not nats.go's plain-text line on stderr.
func TestAsyncNATSErrorsAreLogLines(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	logs := &syncBuffer{}
	env := map[string]string{"NATS_URL": srv.ClientURL()}
	n, err := node.Open(context.Background(), node.App{Name: "shop"}, node.Config{
		Getenv: func(k string) string { return env[k] }, DataDir: t.TempDir(), Logger: zerolog.New(logs)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	nc := n.Services().Conn
	sub, err := nc.SubscribeSync("shop.slow")
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.SetPendingLimits(1, -1); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := nc.Publish("shop.slow", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		for line := range strings.Lines(logs.String()) {
			var l struct{ Level, Message, Error, Subject string }
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				t.Fatalf("a log line is not JSON: %q", line)
			}
			if l.Message == "nats: asynchronous error" {
				if l.Level != "warn" || !strings.Contains(l.Error, "slow consumer") || l.Subject != "shop.slow" {
					t.Fatalf("the asynchronous error's line is %q, want a warning naming the slow consumer and its subject", line)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line for the slow consumer after 10s; the log:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
