package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
