package deploy_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var units = []struct{ file, instance string }{
	{"systemd/jetfleet-web.service", "jetfleet-web.service"},
	{"systemd/jetfleet-worker@.service", "jetfleet-worker@1.service"},
	{"systemd/jetfleet-nats@.service", "jetfleet-nats@n1.service"},
}

// systemdRoot lays out a root directory for systemd-analyze --root: the
// host's unit directory (the targets the units name), the shipped units in
// /etc/systemd/system, and executables at /usr/local/bin/jetfleet (the NATS
// unit) and /usr/local/bin/catalog (the service's binary: web and worker),
// the paths the units run.
func systemdRoot(t *testing.T) string {
	t.Helper()
	hostUnits := "/usr/lib/systemd/system"
	if _, err := os.Stat(filepath.Join(hostUnits, "multi-user.target")); err != nil {
		t.Skipf("no systemd unit directory at %s (Debian: apt-get install systemd)", hostUnits)
	}
	root := t.TempDir()
	for _, dir := range []string{"etc/systemd/system", "usr/local/bin", "usr/lib/systemd"} {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := run(t, time.Minute, nil, "cp", "-a", hostUnits, filepath.Join(root, "usr/lib/systemd")); err != nil {
		t.Fatalf("copy %s: %v\n%s", hostUnits, err, out)
	}
	for _, bin := range []string{"jetfleet", "catalog"} {
		if err := os.WriteFile(filepath.Join(root, "usr/local/bin", bin), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range units {
		dst := filepath.Join(root, "etc/systemd/system", filepath.Base(u.file))
		if err := os.WriteFile(dst, []byte(readFile(t, u.file)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// `systemd-analyze verify` accepts the three units with no message at all
// (it exits 0 on mere warnings such as an unknown key, so any output fails
// the test), and `systemd-analyze security` rates each one's exposure at
// 2.0 or less on its 0-10 scale.
func TestSystemdUnitsVerify(t *testing.T) {
	t.Parallel()
	bin := tool(t, "systemd-analyze", "systemd")
	root := systemdRoot(t)
	args := []string{"verify", "--root=" + root}
	for _, u := range units {
		args = append(args, "/etc/systemd/system/"+u.instance)
	}
	out, err := run(t, time.Minute, []string{"SYSTEMD_LOG_COLOR=0"}, bin, args...)
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	// The check is live: the same verify reports a unit with a typo.
	bad := strings.Replace(readFile(t, units[0].file), "NoNewPrivileges=", "NoNewPrivilege=", 1)
	if err := os.WriteFile(filepath.Join(root, "etc/systemd/system/jetfleet-typo.service"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ = run(t, time.Minute, nil, bin, "verify", "--root="+root, "/etc/systemd/system/jetfleet-typo.service")
	if !strings.Contains(out, "Unknown key") {
		t.Fatalf("systemd-analyze verify did not report an unknown key in a broken copy:\n%s", out)
	}

	for _, u := range units {
		out, err := run(t, time.Minute, nil, bin, "security", "--offline=true", "--threshold=20", "--root="+root,
			"/etc/systemd/system/"+u.instance)
		overall := regexp.MustCompile(`Overall exposure level for [^:]+: [0-9.]+ \S+`).FindString(out)
		if err != nil || overall == "" {
			t.Errorf("systemd-analyze security %s: %v (want exposure 2.0 or less)\n%s", u.instance, err, out)
			continue
		}
		t.Log(overall)
	}
}

// unitValue returns the value of key in a unit file (the last one wins).
func unitValue(text, key string) string {
	v := ""
	for line := range strings.Lines(text) {
		if k, val, ok := strings.Cut(strings.TrimSpace(line), "="); ok && k == key {
			v = val
		}
	}
	return v
}

// flagDuration returns the duration given to --name in a command line
// (--name 5s, --name=5s, or a YAML list's --name, 5s).
func flagDuration(t *testing.T, where, cmd, name string) time.Duration {
	t.Helper()
	m := regexp.MustCompile(`--` + name + `(?:[ =]|, )"?([0-9][0-9a-z.]*)`).FindStringSubmatch(cmd)
	if m == nil {
		t.Fatalf("%s: no --%s in %q", where, name, cmd)
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		t.Fatalf("%s: --%s %q: %v", where, name, m[1], err)
	}
	return d
}

// Every unit leaves its process time to drain: systemd sends SIGTERM and
// waits TimeoutStopSec, which must exceed --drain-delay plus --grace (web)
// or --grace (worker); units restart always and share the hardening.
func TestSystemdUnitsStopInTime(t *testing.T) {
	t.Parallel()
	for _, u := range units {
		text := readFile(t, u.file)
		stop, err := time.ParseDuration(unitValue(text, "TimeoutStopSec"))
		if err != nil {
			t.Fatalf("%s: TimeoutStopSec: %v", u.file, err)
		}
		exec := unitValue(text, "ExecStart")
		var need time.Duration
		switch {
		case strings.Contains(exec, " serve "):
			need = flagDuration(t, u.file, exec, "drain-delay") + flagDuration(t, u.file, exec, "grace")
		case strings.Contains(exec, " work "):
			need = flagDuration(t, u.file, exec, "grace")
		}
		if stop <= need {
			t.Errorf("%s: TimeoutStopSec %s does not exceed the drain and grace times (%s)", u.file, stop, need)
		}
		for key, want := range map[string]string{
			"Restart": "always", "KillSignal": "SIGTERM", "User": "jetfleet", "NoNewPrivileges": "yes",
			"ProtectSystem": "strict", "EnvironmentFile": "/etc/jetfleet/jetfleet.env", "ReadWritePaths": "/var/lib/jetfleet",
		} {
			if got := unitValue(text, key); got != want {
				t.Errorf("%s: %s=%q, want %q", u.file, key, got, want)
			}
		}
	}
}
