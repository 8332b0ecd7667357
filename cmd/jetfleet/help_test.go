package main

import (
	"strings"
	"testing"
)

// TestHelp: `jetfleet --help` lists every command, and `--help` on each
// command (and each schedule subcommand) prints its usage and exits 0
// without doing anything else.
func TestHelp(t *testing.T) {
	dir := t.TempDir()
	r := runJF(t, dir, testEnv(), "", "--help")
	if r.code != 0 {
		t.Fatalf("jetfleet --help: exit %d", r.code)
	}
	for _, c := range commands() {
		if !strings.Contains(r.stdout, "  "+c.name+" ") {
			t.Errorf("jetfleet --help does not list %s:\n%s", c.name, r.stdout)
		}
	}
	helps := [][]string{{"schedule", "add"}, {"schedule", "ls"}, {"schedule", "rm"}}
	for _, c := range commands() {
		helps = append(helps, []string{c.name})
	}
	for _, args := range helps {
		name := strings.Join(args, " ")
		t.Run(name, func(t *testing.T) {
			r := runJF(t, dir, testEnv(), "", append(args, "--help")...)
			if r.code != 0 {
				t.Fatalf("jetfleet %s --help: exit %d; stderr %s", name, r.code, r.stderr)
			}
			if out := r.stdout + r.stderr; !strings.Contains(out, "Usage: jetfleet "+name) {
				t.Fatalf("jetfleet %s --help printed no usage:\n%s", name, out)
			}
		})
	}
}
