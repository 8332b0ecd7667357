package config

import (
	"os"
	"path/filepath"
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

func TestTypedSettings(t *testing.T) {
	env := map[string]string{"D": "90", "D2": "1m30s", "BAD": "soon", "B": "yes", "I": "7"}
	get := func(k string) string { return env[k] }
	if d, err := Duration(get, "D", 0); err != nil || d != 90*time.Second {
		t.Errorf("Duration(90) = %s, %v", d, err)
	}
	if d, err := Duration(get, "D2", 0); err != nil || d != 90*time.Second {
		t.Errorf("Duration(1m30s) = %s, %v", d, err)
	}
	if _, err := Duration(get, "BAD", 0); err == nil {
		t.Error("Duration(soon) accepted")
	}
	if b, err := Bool(get, "B", false); err != nil || !b {
		t.Errorf("Bool(yes) = %v, %v", b, err)
	}
	if _, err := Bool(get, "BAD", false); err == nil {
		t.Error("Bool(soon) accepted")
	}
	if n, err := Int(get, "I", 0); err != nil || n != 7 {
		t.Errorf("Int(7) = %d, %v", n, err)
	}
	if n, _ := Int(get, "UNSET", 3); n != 3 {
		t.Errorf("Int default = %d", n)
	}
}
