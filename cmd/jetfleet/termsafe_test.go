package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/bus"
)

func TestTermSafeEscapesWhatATerminalWouldActOn(t *testing.T) {
	for in, want := range map[string]string{
		"plain text\twith a tab\n":               "plain text\twith a tab\n",
		"héllo → ✓":                              "héllo → ✓",
		"\x1b[2J\x1b]0;pwned\x07done":            `\x1b[2J\x1b]0;pwned\x07done`,
		"é\x1b[31mred":                           `é\x1b[31mred`,
		"next line\u0085and CSI \u009b1m":        `next line\u0085and CSI \u009b1m`,
		"bad \xff\xfe bytes, DEL \x7f, NUL \x00": `bad \xff\xfe bytes, DEL \x7f, NUL \x00`,
	} {
		var b strings.Builder
		n, err := termSafe(&b).Write([]byte(in))
		if err != nil || n != len(in) || b.String() != want {
			t.Errorf("termSafe(%q) wrote %q (n=%d, %v), want %q", in, b.String(), n, err, want)
		}
	}
}

// TestJobDetailsCannotDriveTheTerminal: a dead letter and a job record whose
// body, headers, error and tags hold escape sequences print them escaped.
func TestJobDetailsCannotDriveTheTerminal(t *testing.T) {
	esc := "\x1b[2J\x1b]0;pwned\x07"
	fj := &bus.FailedJob{ID: "j1", Queue: "default", Kind: "k", Body: []byte("not json " + esc),
		Header: nats.Header{"X-Evil": {esc}}, Error: "failed: " + esc}
	st := &bus.JobStatus{ID: "j1", Queue: "default", Kind: "k", State: bus.JobDead, Body: []byte(esc),
		Headers: map[string]string{"X-Evil": esc}, Error: esc, Tags: []string{"t"}, Note: esc, Worker: esc}
	var b strings.Builder
	printFailedJob(&b, fj)
	printFailedTable(&b, []*bus.FailedJob{fj})
	printJob(&b, st, time.Now())
	printJobs(&b, []*bus.JobStatus{st}, time.Now())
	if out := b.String(); strings.ContainsAny(out, "\x1b\x07") || !strings.Contains(out, `\x1b[2J`) {
		t.Fatalf("printed:\n%s\nwant every ESC and BEL escaped", out)
	}
}
