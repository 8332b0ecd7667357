package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// TestDispatchFromStdin: `dispatch <queue> <kind> -` reads the body from
// standard input, provisions the streams of a fresh server, prints the job
// ID, and stores the job with exactly the contract's headers.
func TestDispatchFromStdin(t *testing.T) {
	srv := natstest.Start(t)
	env := testEnv("NATS_URL=" + srv.ClientURL())
	r := runJF(t, t.TempDir(), env, "{\"item_id\":1}\n", "dispatch", "high", "process-item-images", "-",
		"--id", "img-1", "--tries", "2", "--timeout", "90s", "--backoff", "1s,10s")
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Stderr)
	}
	if r.Stdout != "img-1\n" {
		t.Fatalf("stdout = %q, want the job ID", r.Stdout)
	}
	_, js := natstest.Connect(t, srv.ClientURL())
	assertStoredJob(t, js, "jobs.high.process-item-images", `{"item_id":1}`, map[string]string{
		"Nats-Msg-Id":      "img-1",
		"Jetfleet-Tries":   "2",
		"Jetfleet-Timeout": "1m30s",
		"Jetfleet-Backoff": "1s,10s",
	})
}

// TestDispatchBadInput: each bad input exits non-zero with a message naming
// the problem, and nothing is stored. Bad usage (an argument or a flag that
// does not parse or is not allowed, a wrong argument count) exits 2; a bad
// body on standard input, or one the server refuses, exits 1.
func TestDispatchBadInput(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{MaxPayload: 4096})
	env := testEnv("NATS_URL=" + srv.ClientURL())
	big := `"` + strings.Repeat("x", 5000) + `"`
	cases := []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"bad JSON", "", []string{"default", "k", `{"item_id":`}, 2, `the body argument is not valid JSON: "{\"item_id\":"`},
		{"body not UTF-8", "", []string{"default", "k", "\"\xff\""}, 2, `the body argument is not UTF-8: "\"\xff\""`},
		{"bad tag", "", []string{"default", "k", "{}", "--tag", "user 7"}, 2, `--tag: tag "user 7" may only use printable ASCII`},
		{"bad JSON on stdin", "{nope", []string{"default", "k", "-"}, 1, "standard input is not valid JSON"},
		{"empty stdin", "  \n", []string{"default", "k", "-"}, 1, "standard input is empty"},
		{"queue upper case", "", []string{"High", "k", "{}"}, 2, `queue name "High" may only use a-z, 0-9, _ and -`},
		{"kind with dot", "", []string{"default", "a.b", "{}"}, 2, `kind name "a.b" may only use a-z, 0-9, _ and -`},
		{"tries zero", "", []string{"default", "k", "{}", "--tries", "0"}, 2, "--tries 0: must be at least 1"},
		{"bad timeout", "", []string{"default", "k", "{}", "--timeout", "soon"}, 2, `--timeout "soon": want a positive duration`},
		{"bad backoff", "", []string{"default", "k", "{}", "--backoff", "1s,x"}, 2, "--backoff: \"1s,x\" is not a list of durations"},
		{"delay and at", "", []string{"default", "k", "{}", "--delay", "1s", "--at", "2030-01-01T00:00:00Z"}, 2, "--delay and --at both set"},
		{"bad at", "", []string{"default", "k", "{}", "--at", "tomorrow"}, 2, `--at "tomorrow": want an RFC 3339 time`},
		{"at after 2262", "", []string{"default", "k", "{}", "--at", "9999-12-31T23:59:59Z"}, 2, `--at "9999-12-31T23:59:59Z": after 2262-04-11T23:47:16Z`},
		{"delay past 2262", "", []string{"default", "k", "{}", "--delay", "2562047h"}, 2, `--delay "2562047h": the job would be due after 2262-04-11T23:47:16Z`},
		{"ID with a line break", "", []string{"default", "k", "{}", "--id", "a\nb"}, 2, `--id: job ID "a\nb" holds the control character U+000A at byte 1`},
		{"over max payload", "", []string{"default", "k", big}, 1, "the NATS server's max_payload is 4096 bytes"},
		{"too few arguments", "", []string{"default", "k"}, 2, "want 3 arguments (queue, kind, body), got 2"},
		{"unknown flag", "", []string{"default", "k", "{}", "--retries", "3"}, 2, "flag provided but not defined: -retries"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := runJF(t, t.TempDir(), env, c.stdin, append([]string{"dispatch"}, c.args...)...)
			if r.Code != c.code {
				t.Fatalf("exit %d, want %d; stderr: %s", r.Code, c.code, r.Stderr)
			}
			if !strings.Contains(r.Stderr, c.want) {
				t.Fatalf("stderr = %q, want it to contain %q", r.Stderr, c.want)
			}
			if r.Stdout != "" {
				t.Fatalf("stdout = %q, want nothing", r.Stdout)
			}
		})
	}
	_, js := natstest.Connect(t, srv.ClientURL())
	if n := jobsCount(t, js); n != 0 {
		t.Fatalf("refused jobs were stored: JOBS holds %d", n)
	}
}

// jobsCount is the number of messages in JOBS; 0 when it does not exist.
func jobsCount(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), bus.JobsStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestDispatchUnreachableServer: the error says where it tried to connect.
func TestDispatchUnreachableServer(t *testing.T) {
	url := fmt.Sprintf("nats://127.0.0.1:%d", natstest.FreePorts(t, 1)[0])
	r := runJF(t, t.TempDir(), testEnv("NATS_URL="+url), "", "dispatch", "default", "k", "{}")
	if r.Code != 1 || !strings.Contains(r.Stderr, "connect to NATS at "+url) {
		t.Fatalf("exit %d, stderr %q; want 1 and the URL tried", r.Code, r.Stderr)
	}
}

// TestDispatchDelayedGoesToTheScheduler: --delay stores the job as a
// one-shot schedule carrying its ID in Jetfleet-Job-Id.
func TestDispatchDelayedGoesToTheScheduler(t *testing.T) {
	srv := natstest.Start(t)
	env := testEnv("NATS_URL=" + srv.ClientURL())
	r := runJF(t, t.TempDir(), env, "", "dispatch", "default", "remind", `{"n":1}`, "--delay", "1h", "--id", "later-1")
	if r.Code != 0 || r.Stdout != "later-1\n" {
		t.Fatalf("exit %d, stdout %q, stderr %s", r.Code, r.Stdout, r.Stderr)
	}
	_, js := natstest.Connect(t, srv.ClientURL())
	s, err := js.Stream(context.Background(), bus.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetLastMsgForSubject(context.Background(), "schedules.delay.default.later-1")
	if err != nil {
		t.Fatalf("delayed job not stored as a schedule: %v", err)
	}
	if m.Header.Get(bus.HeaderJobID) != "later-1" || m.Header.Get("Nats-Schedule-Target") != "jobs.default.remind.later-1" ||
		!strings.HasPrefix(m.Header.Get("Nats-Schedule"), "@at ") {
		t.Fatalf("schedule headers = %v", m.Header)
	}
}

// TestDispatchKeepsTheProvisionedTopology: dispatch provisions only a
// missing topology; it never rewrites the settings of an existing one.
func TestDispatchKeepsTheProvisionedTopology(t *testing.T) {
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	ctx := context.Background()
	if err := bus.Provision(ctx, js, bus.Config{DuplicateWindow: 5 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	r := runJF(t, t.TempDir(), testEnv("NATS_URL="+srv.ClientURL()), "", "dispatch", "default", "k", "{}")
	if r.Code != 0 {
		t.Fatalf("exit %d: %s", r.Code, r.Stderr)
	}
	s, err := js.Stream(ctx, bus.JobsStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Duplicates; got != 5*time.Minute {
		t.Fatalf("JOBS duplicate window = %s after a CLI dispatch, want the provisioned 5m", got)
	}
}
