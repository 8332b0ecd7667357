package main

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/bus"
	"github.com/jetfleet/jetfleet/internal/natstest"
)

// TestScheduleAddListRemove: `schedule add` registers a periodic job,
// adding the same name again replaces it, `ls` lists each once, `rm`
// removes it, and removing an unknown name is harmless.
func TestScheduleAddListRemove(t *testing.T) {
	srv := natstest.Start(t)
	env := testEnv("NATS_URL=" + srv.ClientURL())
	dir := t.TempDir()
	jf := func(stdin string, args ...string) result {
		t.Helper()
		return runJF(t, dir, env, stdin, append([]string{"schedule"}, args...)...)
	}
	mustOK := func(r result) result {
		t.Helper()
		if r.Code != 0 {
			t.Fatalf("exit %d: %s", r.Code, r.Stderr)
		}
		return r
	}

	r := mustOK(jf("", "ls"))
	if r.Stdout != "" || !strings.Contains(r.Stderr, "no periodic jobs") {
		t.Fatalf("ls on a fresh server: stdout %q stderr %q", r.Stdout, r.Stderr)
	}
	if r = mustOK(jf("", "ls", "--json")); r.Stdout != "[]\n" {
		t.Fatalf("ls --json on a fresh server: %q", r.Stdout)
	}
	r = mustOK(jf("", "add", "nightly", "@every 1h", "default", "cleanup", `{"v":1}`, "--tries", "2"))
	if r.Stdout != "scheduled nightly: @every 1h -> jobs.default.cleanup\n" {
		t.Fatalf("add printed %q", r.Stdout)
	}
	mustOK(jf(`{"v":2}`, "add", "nightly", "@every 2h", "default", "cleanup", "-", "--tries", "3"))
	mustOK(jf("", "add", "digest", "*/5 * * * *", "emails", "send-digest", `{}`))

	r = mustOK(jf("", "ls"))
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("ls printed %d lines, want a header and 2 schedules:\n%s", len(lines), r.Stdout)
	}
	if f := strings.Fields(lines[1]); len(f) != 10 || f[0] != "digest" || strings.Join(f[1:7], " ") != "0 */5 * * * *" ||
		f[7] != "jobs.emails.send-digest" || f[8] != "-" || f[9] != "{}" {
		t.Errorf("digest line = %q", lines[1])
	}
	if f := strings.Fields(lines[2]); len(f) != 6 || f[0] != "nightly" || f[1]+" "+f[2] != "@every 2h0m0s" ||
		f[3] != "jobs.default.cleanup" || f[4] != "tries=3" || f[5] != `{"v":2}` {
		t.Errorf("nightly line = %q (re-adding should replace it)", lines[2])
	}

	r = mustOK(jf("", "ls", "--json"))
	var listed []struct {
		Name, Spec, Queue, Kind, Subject string
		Settings                         map[string]string
		Body                             map[string]any
	}
	if err := json.Unmarshal([]byte(r.Stdout), &listed); err != nil || len(listed) != 2 {
		t.Fatalf("ls --json: %v\n%s", err, r.Stdout)
	}
	if d, n := listed[0], listed[1]; d.Name != "digest" || d.Spec != "0 */5 * * * *" || d.Subject != "jobs.emails.send-digest" || len(d.Settings) != 0 || d.Body == nil || len(d.Body) != 0 ||
		n.Name != "nightly" || n.Queue != "default" || n.Kind != "cleanup" || n.Settings["tries"] != "3" || n.Body["v"] != 2.0 {
		t.Errorf("ls --json = %s", r.Stdout)
	}

	if r = mustOK(jf("", "rm", "nightly")); r.Stdout != "removed nightly\n" {
		t.Fatalf("rm printed %q", r.Stdout)
	}
	if r = mustOK(jf("", "rm", "nightly")); !strings.Contains(r.Stderr, "no periodic job named nightly; nothing removed") {
		t.Fatalf("second rm: stderr %q", r.Stderr)
	}
	r = mustOK(jf("", "ls"))
	if strings.Contains(r.Stdout, "nightly") || !strings.Contains(r.Stdout, "digest") {
		t.Fatalf("ls after rm:\n%s", r.Stdout)
	}

	if r = jf("", "add", "bad", "every minute", "default", "k", "{}"); r.Code != 2 || !strings.Contains(r.Stderr, `<spec> "every minute": has 2 fields`) ||
		strings.Contains(r.Stderr, "invalid job") {
		t.Fatalf("bad spec: exit %d, stderr %q", r.Code, r.Stderr)
	}
	// In form, but a value the server refuses: a usage error too, naming
	// the spec, and nothing stored.
	if r = jf("", "add", "bad", "61 * * * *", "default", "k", "{}"); r.Code != 2 || !strings.Contains(r.Stderr, `schedule spec "61 * * * *": the server refuses it`) ||
		strings.Contains(r.Stderr, "not acknowledged") || !strings.Contains(r.Stderr, "Usage:") {
		t.Fatalf("spec the server refuses: exit %d, stderr %q", r.Code, r.Stderr)
	}
	if r = jf("", "add", "bad", "CRON_TZ=Europe/Atlantis 0 9 * * *", "default", "k", "{}"); r.Code != 2 ||
		!strings.Contains(r.Stderr, `<spec> "CRON_TZ=Europe/Atlantis 0 9 * * *": unknown time zone "Europe/Atlantis"`) {
		t.Fatalf("unknown time zone: exit %d, stderr %q", r.Code, r.Stderr)
	}
	r = mustOK(jf("", "add", "morning", "CRON_TZ=Europe/Berlin 0 9 * * 1-5", "default", "report", "{}"))
	if r.Stdout != "scheduled morning: CRON_TZ=Europe/Berlin 0 9 * * 1-5 -> jobs.default.report\n" {
		t.Fatalf("add with a time zone printed %q", r.Stdout)
	}
	r = mustOK(jf("", "ls", "--json"))
	if !strings.Contains(r.Stdout, `"spec": "CRON_TZ=Europe/Berlin 0 0 9 * * 1-5"`) {
		t.Fatalf("ls --json does not show the zone:\n%s", r.Stdout)
	}
	mustOK(jf("", "rm", "morning"))
	if r = mustOK(jf("", "ls")); strings.Contains(r.Stdout, "bad") {
		t.Fatalf("the refused schedule is listed:\n%s", r.Stdout)
	}
	if r = jf("", "frobnicate"); r.Code != 2 || !strings.Contains(r.Stderr, `unknown subcommand "frobnicate"`) {
		t.Fatalf("unknown subcommand: exit %d, stderr %q", r.Code, r.Stderr)
	}
}

// TestScheduledRunIsFoundAndCancelledBySequence: with no worker running,
// a waiting run of a periodic job is found by its ID, its JOBS sequence,
// with `queue job`, and `queue cancel` of that ID removes it.
func TestScheduledRunIsFoundAndCancelledBySequence(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv.ClientURL())
	env := testEnv("NATS_URL=" + srv.ClientURL())
	dir := t.TempDir()
	jf := func(args ...string) result {
		t.Helper()
		return runJF(t, dir, env, "", args...)
	}
	if r := jf("schedule", "add", "go-tick2", "@every 1s", "schedq", "jetfleet-noop", "{}"); r.Code != 0 {
		t.Fatalf("schedule add: exit %d: %s", r.Code, r.Stderr)
	}
	seq := firstOfTwoRuns(t, js, "jobs.schedq.>")
	if r := jf("schedule", "rm", "go-tick2"); r.Code != 0 {
		t.Fatalf("schedule rm: exit %d: %s", r.Code, r.Stderr)
	}
	if r := jf("queue", "job", seq); r.Code != 0 || !strings.Contains(r.Stdout, "ready: waiting for a worker") || !strings.Contains(r.Stdout, "sequence "+seq) {
		t.Fatalf("queue job %s: exit %d\n%s%s", seq, r.Code, r.Stdout, r.Stderr)
	}
	if r := jf("queue", "cancel", seq); r.Code != 0 || !strings.Contains(r.Stdout, "Cancelled job "+seq+" (") {
		t.Fatalf("queue cancel %s: exit %d\n%s%s", seq, r.Code, r.Stdout, r.Stderr)
	}
	if r := jf("queue", "job", seq); r.Code != 0 || !strings.Contains(r.Stdout, "cancelled at") {
		t.Fatalf("queue job %s after the cancel: exit %d\n%s%s", seq, r.Code, r.Stdout, r.Stderr)
	}
}

// firstOfTwoRuns waits until JOBS holds two messages on filter and
// returns the sequence of the first.
func firstOfTwoRuns(t *testing.T, js jetstream.JetStream, filter string) string {
	t.Helper()
	ctx := context.Background()
	var first uint64
	eventually(t, 15*time.Second, "two runs on "+filter, func() error {
		s, err := js.Stream(ctx, bus.JobsStream)
		if err != nil {
			return err
		}
		m, err := s.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(filter))
		if err != nil {
			return err
		}
		if _, err := s.GetMsg(ctx, m.Sequence+1, jetstream.WithGetMsgSubject(filter)); err != nil {
			return errors.Join(errors.New("one run so far"), err)
		}
		first = m.Sequence
		return nil
	})
	return strconv.FormatUint(first, 10)
}
