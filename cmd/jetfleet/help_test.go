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
		})
	}
}
