package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/jetfleet/jetfleet/internal/natstest"
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
		{`A="my_sess" # trailing comment`, "A", "my_sess", true},
		{`A='x'   # comment`, "A", "x", true},
		{`A="x"#not-a-comment`, "A", `"x"#not-a-comment`, true},
		{`A="x" y`, "A", `"x" y`, true},
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
	// NATS_URL set to the recorded URL is that server: up's credentials
	// in the data directory apply to it (ConnectNATS).
	same := func(k string) string {
		if k == "NATS_URL" {
			return "nats://127.0.0.1:41234"
		}
		return ""
	}
	if _, fromDataDir := natsURL(same, filepath.Join(dir, "new", "data")); !fromDataDir {
		t.Error("NATS_URL equal to the recorded URL does not count as the data directory's server")
	}
	if _, fromDataDir := natsURL(set, filepath.Join(dir, "new", "data")); fromDataDir {
		t.Error("another NATS_URL counts as the data directory's server")
	}
}

// TestHalfAClientCertificateIsRefused: NATS_TLS_CERT without
// NATS_TLS_KEY (or the reverse) is an error naming both, not a connection
// made without the certificate.
func TestHalfAClientCertificateIsRefused(t *testing.T) {
	t.Parallel()
	for set, missing := range map[string]string{"NATS_TLS_CERT": "NATS_TLS_KEY", "NATS_TLS_KEY": "NATS_TLS_CERT"} {
		getenv := func(k string) string {
			switch k {
			case set:
				return "/nonexistent.pem"
			case "NATS_URL":
				return "nats://127.0.0.1:1" // nothing listens: the refusal comes first
			}
			return ""
		}
		_, _, err := ConnectNATS(getenv, t.TempDir(), "test")
		if err == nil || !strings.Contains(err.Error(), set+" is set but "+missing+" is not") {
			t.Errorf("%s alone: %v, want a refusal naming %s", set, err, missing)
		}
	}
}

// TestScrubHidesEverySecret: an error quoting a URL, a password or a
// token, as written or percent-decoded, keeps its cause for errors.Is but
// shows none of them.
func TestScrubHidesEverySecret(t *testing.T) {
	url := "nats://alice:p%40ss@h1:4222,nats://T0ken@h2:4222"
	getenv := func(k string) string {
		return map[string]string{"NATS_PASSWORD": "envPassword", "NATS_TOKEN": "envToken"}[k]
	}
	cause := os.ErrNotExist
	err := fmt.Errorf("parse %q (password p@ss, envPassword, envToken): %w", url, cause)
	got := scrub(err, natsSecrets(getenv, url)...)
	for _, secret := range []string{"p%40ss", "p@ss", "T0ken", "envPassword", "envToken"} {
		if strings.Contains(got.Error(), secret) {
			t.Errorf("%q shows %q", got, secret)
		}
	}
	if !errors.Is(got, cause) {
		t.Errorf("%v lost its cause", got)
	}
	if plain := errors.New("no secret here"); scrub(plain, "s3cret") != plain {
		t.Error("an error without secrets was wrapped")
	}
}

// ConnectedURL names a server even while the connection is down, so that
// an error then says which NATS it was about ("NATS at : ..." did not),
// and never its password.
func TestConnectedURLWhileReconnecting(t *testing.T) {
	srv := natstest.Start(t)
	u := strings.Replace(srv.ClientURL(), "nats://", "nats://ann:secret@", 1)
	nc, err := nats.Connect(u, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	host := strings.TrimPrefix(srv.ClientURL(), "nats://")
	if got := ConnectedURL(nc); !strings.Contains(got, host) {
		t.Fatalf("connected: %q, want it to name %s", got, host)
	}
	srv.Shutdown()
	deadline := time.Now().Add(5 * time.Second)
	for nc.IsConnected() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	got := ConnectedURL(nc)
	if !strings.Contains(got, host) || strings.Contains(got, "secret") {
		t.Fatalf("reconnecting: %q, want it to name %s without the password", got, host)
	}
}
