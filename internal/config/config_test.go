package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadDotEnvFillsOnlyUnsetVariables(t *testing.T) {
	path := filepath.Join(t.TempDir(), ".env")
	content := "# comment\n\nexport JF_TEST_A=one\nJF_TEST_B=\"two words\"\nJF_TEST_C=three # trailing\nJF_TEST_SET=from-file\n"
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JF_TEST_SET", "from-env")
	for _, k := range []string{"JF_TEST_A", "JF_TEST_B", "JF_TEST_C"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	if err := LoadDotEnv(path); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"JF_TEST_A": "one", "JF_TEST_B": "two words", "JF_TEST_C": "three", "JF_TEST_SET": "from-env"}
	for k, v := range want {
		if got := os.Getenv(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if err := LoadDotEnv(filepath.Join(t.TempDir(), "missing")); err != nil {
		t.Errorf("a missing .env is not an error: %v", err)
	}
	if err := os.WriteFile(path, []byte("NOT A LINE\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := LoadDotEnv(path); err == nil {
		t.Error("a malformed line was accepted")
	}
}

func TestParseDotEnvLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		line, key, val string
		ok             bool
	}{
		{"", "", "", false},
		{"   ", "", "", false},
		{"# a comment", "", "", false},
		{"  # indented comment", "", "", false},
		{"A=1", "A", "1", true},
		{"  A = 1  ", "A", "1", true},
		{"export A=1", "A", "1", true},
		{"A=", "A", "", true},
		{`A="two words"`, "A", "two words", true},
		{`A='single'`, "A", "single", true},
		{`A="keeps # inside quotes"`, "A", "keeps # inside quotes", true},
		{"A=value # comment", "A", "value", true},
		{"A=value#not-a-comment", "A", "value#not-a-comment", true},
		{"A=x=y", "A", "x=y", true},
		{`A="unbalanced`, "A", `"unbalanced`, true},
		{`A="mixed'`, "A", `"mixed'`, true},
		{`A=""`, "A", "", true},
		{"DSN=user:pw@tcp(db:3306)/app?parseTime=true", "DSN", "user:pw@tcp(db:3306)/app?parseTime=true", true},
	} {
		key, val, ok, err := parseDotEnvLine(tc.line)
		if err != nil || ok != tc.ok || key != tc.key || val != tc.val {
			t.Errorf("parseDotEnvLine(%q) = %q, %q, %v, %v; want %q, %q, %v", tc.line, key, val, ok, err, tc.key, tc.val, tc.ok)
		}
	}
	for _, bad := range []string{"NOT A LINE", "=value", "A B=1", "export", "A\t B=1"} {
		if key, val, ok, err := parseDotEnvLine(bad); err == nil || !strings.Contains(err.Error(), "want KEY=VALUE") {
			t.Errorf("parseDotEnvLine(%q) = %q, %q, %v, %v; want an error", bad, key, val, ok, err)
		}
	}
}

func TestTypedSettings(t *testing.T) {
	t.Parallel()
	env := func(v string) Getenv { return func(string) string { return v } }
	for v, want := range map[string]time.Duration{"": 7 * time.Second, "0": 0, "90": 90 * time.Second, "1m30s": 90 * time.Second, "250ms": 250 * time.Millisecond, "-3": -3 * time.Second} {
		if got, err := Duration(env(v), "K", 7*time.Second); err != nil || got != want {
			t.Errorf("Duration(%q) = %s, %v; want %s", v, got, err, want)
		}
	}
	for _, bad := range []string{"soon", "1.5", "90 s"} {
		if _, err := Duration(env(bad), "JETFLEET_GRACE", 0); err == nil || !strings.Contains(err.Error(), `JETFLEET_GRACE="`+bad+`" is not a duration`) {
			t.Errorf("Duration(%q) = %v, want an error naming the variable", bad, err)
		}
	}
	for v, want := range map[string]bool{"1": true, "true": true, "TRUE": true, "Yes": true, "on": true, "0": false, "false": false, "no": false, "OFF": false} {
		if got, err := Bool(env(v), "K", !want); err != nil || got != want {
			t.Errorf("Bool(%q) = %v, %v; want %v", v, got, err, want)
		}
	}
	if got, err := Bool(env(""), "K", true); err != nil || !got {
		t.Errorf("Bool unset = %v, %v; want the default true", got, err)
	}
	for _, bad := range []string{"maybe", "2", "y"} {
		if _, err := Bool(env(bad), "JETFLEET_X", false); err == nil || !strings.Contains(err.Error(), `JETFLEET_X="`+bad+`" is not a boolean`) {
			t.Errorf("Bool(%q) = %v, want an error naming the variable", bad, err)
		}
	}
	for v, want := range map[string]int{"": 3, "0": 0, "16": 16, "-2": -2} {
		if got, err := Int(env(v), "K", 3); err != nil || got != want {
			t.Errorf("Int(%q) = %d, %v; want %d", v, got, err, want)
		}
	}
	for _, bad := range []string{"x", "1.5", "1e3", " 7"} {
		if _, err := Int(env(bad), "JETFLEET_N", 0); err == nil || !strings.Contains(err.Error(), `JETFLEET_N="`+bad+`" is not an integer`) {
			t.Errorf("Int(%q) = %v, want an error naming the variable", bad, err)
		}
	}
}

// NATS_URL wins over the recorded URL, which wins over the default; an
// empty or blank file counts as none.
func TestNATSURLPrecedence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	none := func(string) string { return "" }
	set := func(k string) string {
		if k == "NATS_URL" {
			return "nats://from-env:4222"
		}
		return ""
	}
	if got := NATSURL(none, filepath.Join(dir, "missing")); got != DefaultNATSURL {
		t.Errorf("no file, no variable: %q, want %q", got, DefaultNATSURL)
	}
	if err := os.WriteFile(filepath.Join(dir, URLFile), []byte(" \n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := NATSURL(none, dir); got != DefaultNATSURL {
		t.Errorf("blank file: %q, want %q", got, DefaultNATSURL)
	}
	if err := WriteNATSURL(filepath.Join(dir, "new", "data"), "nats://127.0.0.1:41234"); err != nil {
		t.Fatal(err)
	}
	if got := NATSURL(none, filepath.Join(dir, "new", "data")); got != "nats://127.0.0.1:41234" {
		t.Errorf("recorded: %q", got)
	}
	if got := NATSURL(set, filepath.Join(dir, "new", "data")); got != "nats://from-env:4222" {
		t.Errorf("NATS_URL and a recorded URL: %q, want NATS_URL's", got)
	}
}
