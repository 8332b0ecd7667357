package main

import (
	"strings"
	"testing"
)

// TestHelp: `jetfleet --help` lists every command, and `--help` on each
// command (and each schedule and queue subcommand) prints its usage and
// exits 0 without doing anything else, with each flag shown as "-name" and
// at most one word for its value (package flag takes a `quoted` word of a
// flag's description for that word: "-no-workers catalog work").
func TestHelp(t *testing.T) {
	dir := t.TempDir()
	r := runJF(t, dir, testEnv(), "", "--help")
	if r.Code != 0 {
		t.Fatalf("jetfleet --help: exit %d", r.Code)
	}
	for _, c := range commands() {
		if !strings.Contains(r.Stdout, "  "+c.name+" ") {
			t.Errorf("jetfleet --help does not list %s:\n%s", c.name, r.Stdout)
		}
	}
	helps := [][]string{{"schedule", "add"}, {"schedule", "ls"}, {"schedule", "rm"}}
	for _, c := range commands() {
		helps = append(helps, []string{c.name})
	}
	for _, c := range queueCommands() {
		helps = append(helps, []string{"queue", c.name})
	}
	for _, args := range helps {
		name := strings.Join(args, " ")
		t.Run(name, func(t *testing.T) {
			r := runJF(t, dir, testEnv(), "", append(args, "--help")...)
			if r.Code != 0 {
				t.Fatalf("jetfleet %s --help: exit %d; stderr %s", name, r.Code, r.Stderr)
			}
			if out := r.Stdout + r.Stderr; !strings.Contains(out, "Usage: jetfleet "+name) {
				t.Fatalf("jetfleet %s --help printed no usage:\n%s", name, out)
			}
			for _, line := range strings.Split(r.Stdout+r.Stderr, "\n") {
				if strings.HasPrefix(line, "  -") && len(strings.Fields(line)) > 2 {
					t.Errorf("jetfleet %s --help: flag line %q has more than one word for its value", name, line)
				}
			}
		})
	}
}

// TestWorkRefusesFlagValuesItCannotUse: a value of work's flags that the
// worker would replace with its default, or could not run with, exits 2
// naming the flag, before anything connects (NATS_URL points nowhere).
func TestWorkRefusesFlagValuesItCannotUse(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"--concurrency", "0"}, {"--concurrency", "-1"}, {"--concurrency", "100000000"},
		{"--tries", "0"}, {"--timeout", "-1s"}, {"--timeout", "0"}, {"--grace", "0"},
		{"--max-jobs", "-5"}, {"--max-time", "-1s"}, {"--ack-wait", "-1s"}, {"--ack-wait", "10ms"},
		{"--stuck-after", "5s"}, {"--backoff", "zz"},
	} {
		r := runJF(t, dir, testEnv("NATS_URL=nats://127.0.0.1:1"), "", append([]string{"work"}, args...)...)
		if r.Code != 2 || !strings.Contains(r.Stderr, args[0]) || !strings.Contains(r.Stderr, "Usage: jetfleet work") {
			t.Errorf("work %s: exit %d, stderr %q; want 2, naming %s, with the usage", strings.Join(args, " "), r.Code, r.Stderr, args[0])
		}
	}
}

// TestUpServeAndNATSRefuseFlagValuesAsUsageErrors: as for work, a value of
// up's, serve's or nats's flags that is not allowed exits 2, naming the
// flag, with the usage.
func TestUpServeAndNATSRefuseFlagValuesAsUsageErrors(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"up", "--replicas", "0"}, {"up", "--grace", "0"}, {"up", "--queues", "bad.name"}, {"up", "--sync-interval", "zz"},
		{"serve", "--grace", "0"}, {"serve", "--drain-delay", "-1s"}, {"nats", "--sync-interval", "zz"},
	} {
		r := runJF(t, dir, testEnv("NATS_URL=nats://127.0.0.1:1"), "", args...)
		if r.Code != 2 || !strings.Contains(r.Stderr, args[1]) || !strings.Contains(r.Stderr, "Usage: jetfleet "+args[0]) {
			t.Errorf("%s: exit %d, stderr %q; want 2, naming %s, with the usage", strings.Join(args, " "), r.Code, r.Stderr, args[1])
		}
	}
}
