package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/node"
)

// TestQueueRefusesNegativeValues: a negative duration, count or limit
// means nothing to any queue subcommand: each is a usage error (exit 2)
// naming the flag, and nothing is done (`retry all --since -5m` retries
// nothing, where it used to ignore the filter and retry everything).
func TestQueueRefusesNegativeValues(t *testing.T) {
	f := newFleet(t)
	f.storeDeadLetter("neg-1", "default", "jetfleet-noop", "x", 1)
	f.storeDeadLetter("neg-2", "default", "jetfleet-noop", "x", 2)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"failed", "--since", "-5m"}, "--since -5m0s: must not be negative"},
		{[]string{"failed", "--limit", "-1"}, "--limit -1: must not be negative"},
		{[]string{"retry", "all", "--since", "-5m"}, "--since -5m0s: must not be negative"},
		{[]string{"flush", "--hours", "-1"}, "--hours -1: must not be negative"},
		{[]string{"monitor", "default", "--every", "-1s", "--max-wait", "-1s"}, "--every -1s: must not be negative"},
		{[]string{"monitor", "default", "--max-wait", "-1s"}, "--max-wait -1s: must not be negative"},
		{[]string{"jobs", "--limit", "-1"}, "--limit -1: must not be negative"},
		{[]string{"batch", "some-batch", "--limit", "-1"}, "--limit -1: must not be negative"},
		{[]string{"stats", "--interval", "-1s"}, "--interval -1s: must not be negative"},
	} {
		r := f.jf(append([]string{"queue"}, c.args...)...)
		if r.Code != 2 || !strings.Contains(r.Stderr, "jetfleet queue "+c.args[0]+": "+c.want) || r.Stdout != "" {
			t.Errorf("queue %s: exit %d, stdout %q, stderr %q; want 2 and %q", strings.Join(c.args, " "), r.Code, r.Stdout, r.Stderr, c.want)
		}
	}
	if n := f.streamMsgs(bus.DLQStream); n != 2 {
		t.Fatalf("DLQ holds %d dead letters after the refused commands, want 2", n)
	}
}

// TestQueueUsageErrorsExit2BeforeConnecting: a flag or an argument that
// is not allowed is bad usage (exit 2, docs/operations.md), named, and
// found before the command connects: with NATS unreachable, no
// connection error.
func TestQueueUsageErrorsExit2BeforeConnecting(t *testing.T) {
	url := fmt.Sprintf("nats://127.0.0.1:%d", natstest.FreePorts(t, 1)[0])
	env := testEnv("NATS_URL=" + url)
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"queue", "cancel"}, "jetfleet queue cancel: give job IDs, or --queue, --tag or --batch (one of them)"},
		{[]string{"queue", "cancel", "x", "--tag", "y"}, "give job IDs, or --queue, --tag or --batch (one of them)"},
		{[]string{"queue", "cancel", "--queue", "Low"}, `queue name "Low" may only use a-z, 0-9, _ and -`},
		{[]string{"queue", "retry", "x", "--queue", "default"}, "--queue, --kind and --since go with `retry all`"},
		{[]string{"queue", "jobs", "--state", "bogus"}, `jetfleet queue jobs: --state "bogus": want one of delayed, ready, running, retrying, succeeded, dead or cancelled`},
		{[]string{"queue", "jobs", "--kind", "a.b"}, `kind name "a.b" may only use`},
		{[]string{"queue", "jobs", "--tag", "a b"}, `jetfleet queue jobs: --tag "a b": tag "a b" may only use printable ASCII`},
		{[]string{"queue", "cancel", "--tag", "a.b"}, `jetfleet queue cancel: --tag "a.b": tag "a.b" may only use`},
		{[]string{"queue", "batch", "x", "--jobs", "bogus"}, `--jobs "bogus": want states among pending, succeeded, failed, skipped, or all`},
		{[]string{"queue", "flush", "--hours", "-1"}, "--hours -1: must not be negative"},
		{[]string{"queue", "stats", "--interval", "0", "--watch"}, "--interval 0s: must be positive"},
		{[]string{"queue", "failed", "--queue", "Bad.Queue"}, `queue name "Bad.Queue" may only use`},
		{[]string{"queue", "clear", "Bad.Queue", "--force"}, `queue name "Bad.Queue" may only use`},
		{[]string{"queue", "pause", "Bad.Queue"}, `queue name "Bad.Queue" may only use`},
		{[]string{"queue", "monitor", "default:abc"}, `max "abc" is not a whole number`},
		{[]string{"dispatch", "default", "k", "{}", "--delay", "xyz"}, `jetfleet dispatch: --delay "xyz": want a positive duration like 10s`},
		{[]string{"dispatch", "default", "k", "{}", "--tries", "0"}, "--tries 0: must be at least 1"},
		{[]string{"dispatch", "default", "k", "{}", "--id", strings.Repeat("i", 257)}, "--id: job ID is 257 bytes; the limit is 256"},
		{[]string{"dispatch", "High", "k", "{}"}, `queue name "High" may only use`},
		{[]string{"dispatch", "default", "k", "{nope"}, `the body argument is not valid JSON`},
		{[]string{"schedule", "add", "n", "bogus", "default", "k", "{}"}, `jetfleet schedule add: <spec> "bogus": has 1 field; want "@every 1m"`},
		{[]string{"schedule", "add", "n", "@every 10ms", "default", "k", "{}"}, `<spec> "@every 10ms": @every needs a duration of at least 1s`},
		{[]string{"schedule", "add", "n", "@often", "default", "k", "{}"}, `<spec> "@often": unknown shortcut`},
		{[]string{"schedule", "add", "n", "@daily", "default", "k", "{}", "--timeout", "-1s"}, `--timeout "-1s": want a positive duration`},
		{[]string{"schedule", "rm", "Nightly"}, `schedule name "Nightly" may only use`},
		{[]string{"bench", "jobs", "--n", "0"}, "jetfleet bench: --n 0: want 1 to 10000000"},
		{[]string{"bench", "jobs", "--rate", "2000000000"}, "--rate 2000000000: want 1 to 1000000"},
		{[]string{"bench", "jobs", "--rounds", "-1"}, "--rounds -1: want 1 to 100"},
		{[]string{"bench", "foo"}, "want `bench jobs` and flags; got [\"foo\"]"},
	} {
		name := strings.Join(c.args, " ")
		r := runJF(t, dir, env, "", c.args...)
		if r.Code != 2 || !strings.Contains(r.Stderr, c.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 and %q", name, r.Code, r.Stderr, c.want)
		}
		if strings.Contains(r.Stderr, "connect to NATS") || strings.Contains(r.Stderr, "invalid job") || !strings.Contains(r.Stderr, "Usage: jetfleet ") {
			t.Errorf("%s: stderr %q; want the usage, no connection attempt and no \"invalid job\"", name, r.Stderr)
		}
	}
}

// TestQueueClearUnknownQueueAsksNothing: `queue clear` of a queue that
// does not exist says so (exit 1) before it asks, as with --force.
func TestQueueClearUnknownQueueAsksNothing(t *testing.T) {
	f := newFleet(t)
	if err := bus.EnsureQueues(context.Background(), f.js, bus.Config{}, "default"); err != nil {
		t.Fatal(err)
	}
	want := `unknown queue "nosuch" (known queues: default)`
	r := runJF(t, f.dir, f.env, "n\n", "queue", "clear", "nosuch")
	if r.Code != 1 || strings.Contains(r.Stdout, "Delete the") || !strings.Contains(r.Stderr, want) {
		t.Errorf("clear nosuch: exit %d, stdout %q, stderr %q; want 1 and %q, no question", r.Code, r.Stdout, r.Stderr, want)
	}
	if r := f.jf("queue", "clear", "nosuch", "--force"); r.Code != 1 || !strings.Contains(r.Stderr, want) {
		t.Errorf("clear nosuch --force: exit %d, stderr %q", r.Code, r.Stderr)
	}
	f.dispatchJSON("default", "k", "{}")
	r = runJF(t, f.dir, f.env, "n\n", "queue", "clear", "default")
	if r.Code != 0 || !strings.Contains(r.Stdout, "Delete the 1 job waiting on queue default") || !strings.HasSuffix(r.Stdout, "Nothing deleted.\n") {
		t.Errorf("clear default answered n: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
}

// TestQueueJobsLimitZeroListsAll: `queue jobs --limit 0` lists all (up to
// the cap of 1000), as `queue failed` and `queue batch` do; a limit over
// the cap lists the cap and says so on stderr.
func TestQueueJobsLimitZeroListsAll(t *testing.T) {
	f := newFleet(t)
	if err := bus.EnsureQueues(context.Background(), f.js, bus.Config{}, "default"); err != nil {
		t.Fatal(err)
	}
	const n = 60
	for range n {
		f.dispatchJSON("default", "k", "{}")
	}
	count := func(args ...string) (int, result) {
		t.Helper()
		r := f.jf(append([]string{"queue", "jobs", "--state", "ready", "--json"}, args...)...)
		var jobs []json.RawMessage
		if err := json.Unmarshal([]byte(r.Stdout), &jobs); r.Code != 0 || err != nil {
			t.Fatalf("queue jobs %v: exit %d, %v\n%s%s", args, r.Code, err, r.Stdout, r.Stderr)
		}
		return len(jobs), r
	}
	if got, _ := count(); got != 50 {
		t.Errorf("queue jobs lists %d by default, want 50", got)
	}
	if got, r := count("--limit", "0"); got != n || r.Stderr != "" {
		t.Errorf("queue jobs --limit 0 lists %d, want all %d; stderr %q", got, n, r.Stderr)
	}
	if got, r := count("--limit", "5000"); got != n || !strings.Contains(r.Stderr, "jetfleet queue jobs: --limit 5000 is capped at 1000") {
		t.Errorf("queue jobs --limit 5000 lists %d, want %d and a note; stderr %q", got, n, r.Stderr)
	}
	if r := f.jf("queue", "jobs", "--help"); !strings.Contains(r.Stderr, "0: all; capped at 1000") {
		t.Errorf("queue jobs --help does not say --limit is capped at 1000:\n%s", r.Stderr)
	}
}

// TestQueueJobHintQuotesTheID: the command `queue job` suggests for a dead
// job's dead letter can be pasted into a shell whatever the ID holds.
func TestQueueJobHintQuotesTheID(t *testing.T) {
	f := newFleet(t)
	for i, id := range []string{"plain-1.a", "it's a b.c", "-dash $HOME"} {
		f.storeDeadLetter(id, "default", "jetfleet-noop", "reason "+id, uint64(i+1))
		r := f.jf("queue", "job", "--", id)
		_, hint, ok := strings.Cut(r.Stdout, "`jetfleet ")
		hint, _, ok2 := strings.Cut(hint, "`")
		if r.Code != 0 || !ok || !ok2 {
			t.Fatalf("queue job %q: exit %d, no hint\n%s%s", id, r.Code, r.Stdout, r.Stderr)
		}
		if id == "plain-1.a" && hint != "queue show plain-1.a" {
			t.Errorf("hint for %q is %q, want it unquoted", id, hint)
		}
		sh := exec.Command("sh", "-c", shellQuote(binary)+" "+hint)
		sh.Dir, sh.Env = f.dir, f.env
		out, err := sh.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "ID:         "+id+"\n") || !strings.Contains(string(out), "reason "+id) {
			t.Errorf("the hint `jetfleet %s` pasted into sh: %v\n%s", hint, err, out)
		}
	}
}

// TestQueueShellQuote: IDs in hints are quoted only when a shell needs it.
func TestQueueShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"order-42":       "order-42",
		"a:b/c@d%e+f=g,": "a:b/c@d%e+f=g,",
		"":               "''",
		"a b.c":          "'a b.c'",
		"it's":           `'it'\''s'`,
		"$(rm -rf ~)":    "'$(rm -rf ~)'",
		"été":            "'été'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
	if got := idArg("-x"); got != "-- -x" {
		t.Errorf(`idArg("-x") = %s, want -- -x`, got)
	}
}

// TestQueueDataFlag: every queue subcommand takes --data, as dispatch and
// schedule do: the data directory whose nats.url names the server when
// NATS_URL is unset (over JETFLEET_DATA).
func TestQueueDataFlag(t *testing.T) {
	srv := natstest.Start(t)
	data := filepath.Join(t.TempDir(), "data")
	if err := node.WriteNATSURL(data, srv.ClientURL()); err != nil {
		t.Fatal(err)
	}
	// JETFLEET_DATA names a server that is not there: only --data finds it.
	elsewhere := filepath.Join(t.TempDir(), "elsewhere")
	if err := node.WriteNATSURL(elsewhere, fmt.Sprintf("nats://127.0.0.1:%d", natstest.FreePorts(t, 1)[0])); err != nil {
		t.Fatal(err)
	}
	env := testEnv("JETFLEET_DATA=" + elsewhere)
	dir := t.TempDir()
	if r := runJF(t, dir, env, "", "dispatch", "default", "jetfleet-noop", "{}", "--data", data, "--id", "via-data"); r.Code != 0 {
		t.Fatalf("dispatch --data: exit %d: %s", r.Code, r.Stderr)
	}
	if r := runJF(t, dir, env, "", "queue", "job", "via-data", "--data", data); r.Code != 0 || !strings.Contains(r.Stdout, "ID:") {
		t.Fatalf("queue job --data: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := runJF(t, dir, env, "", "queue", "stats", "--data", data); r.Code != 0 || !strings.Contains(r.Stdout, "Workers: 0.") {
		t.Fatalf("queue stats --data: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := runJF(t, dir, env, "", "queue", "stats"); r.Code != 1 || !strings.Contains(r.Stderr, "connect to NATS") {
		t.Fatalf("queue stats without --data: exit %d, stderr %q; want 1, JETFLEET_DATA's server is not there", r.Code, r.Stderr)
	}
	for _, c := range queueCommands() {
		if r := runJF(t, dir, env, "", "queue", c.name, "--help"); !strings.Contains(r.Stderr, "\n  -data string\n") {
			t.Errorf("queue %s --help lists no --data:\n%s", c.name, r.Stderr)
		}
	}
}
