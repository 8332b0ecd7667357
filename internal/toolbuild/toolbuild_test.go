package toolbuild

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestBinarySkipsATestWithoutTheTimeToBuild(t *testing.T) {
	tool := Tool{Name: "a tool", File: "jetfleet-toolbuild-test-missing", Env: "JETFLEET_TOOLBUILD_TEST_BIN",
		Module: "no-such-module", Package: ".", BuildTime: 100_000 * time.Hour}
	returned, skipped := false, false
	t.Run("inner", func(t *testing.T) {
		t.Cleanup(func() { skipped = t.Skipped() })
		Binary(t, tool)
		returned = true
	})
	if returned || !skipped {
		t.Fatalf("for a tool that cannot be built, Binary returned: %v; the test was skipped: %v", returned, skipped)
	}
	bin, err := path(tool.Env, tool.File)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); !os.IsNotExist(err) {
		t.Errorf("%s: %v; want no file", bin, err)
	}
}

func TestBinaryTakesTheFileItsVariableNames(t *testing.T) {
	want := filepath.Join(t.TempDir(), "tool")
	t.Setenv("JETFLEET_TOOLBUILD_TEST_BIN", want)
	tool := Tool{Name: "a tool", File: "unused", Env: "JETFLEET_TOOLBUILD_TEST_BIN", Module: "no-such-module", BuildTime: time.Hour}
	if got := Binary(t, tool); got != want {
		t.Errorf("Binary: %s, want %s", got, want)
	}
}
