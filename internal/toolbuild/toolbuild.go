// Package toolbuild builds the programs some tests run (Jaeger, KEDA's
// scaler) from the repository's tools modules, which keep their
// dependencies out of jetfleet's go.mod, into GOPATH/bin once.
package toolbuild

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Tool is a program built from tools/<Module>.
type Tool struct {
	Name      string        // what the messages call it: "Jaeger v1.76.0"
	File      string        // the binary's file name in GOPATH/bin
	Env       string        // a variable naming the binary instead
	Module    string        // the directory under tools/
	Package   string        // the package to build, in that module
	BuildTime time.Duration // what its first build may take on 2 cores beside other tests
}

// Binary returns tool's binary: the file $Env names, else GOPATH/bin/File,
// built there when missing. It skips the test, saying why and how to build
// it, when it cannot be built, or when the test run (go test's -timeout)
// ends before tool.BuildTime has passed: go test's default of 10 minutes
// is too short for a first build, and a test killed by its timeout fails
// its whole package.
func Binary(t testing.TB, tool Tool) string {
	t.Helper()
	bin, err := path(tool.Env, tool.File)
	if err != nil {
		t.Skipf("%s: %v", tool.Name, err)
	}
	if _, err := os.Stat(bin); err == nil || os.Getenv(tool.Env) != "" {
		return bin
	}
	how := fmt.Sprintf("go build -C tools/%s -o %s %s (bash .ci/run does)", tool.Module, bin, tool.Package)
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if deadline, ok := d.Deadline(); ok && time.Until(deadline) < tool.BuildTime {
			t.Skipf("%s is not built, and its first build may take longer than the %s this test run has left; build it once with: %s",
				tool.Name, time.Until(deadline).Round(time.Second), how)
		}
	}
	t.Logf("building %s into %s from tools/%s (minutes, once)", tool.Name, bin, tool.Module)
	if err := build(bin, tool.Module, tool.Package); err != nil {
		t.Skipf("%s could not be built, so this test cannot run (%v); to build it: %s", tool.Name, err, how)
	}
	return bin
}

// Built reports whether tool's binary is there already, for a benchmark
// that uses it when it can but would rather not build it.
func Built(tool Tool) bool {
	bin, err := path(tool.Env, tool.File)
	if err != nil {
		return false
	}
	_, err = os.Stat(bin)
	return err == nil
}

// path is where binary name is looked for: the file env names when set,
// else GOPATH/bin/name.
func path(env, name string) (string, error) {
	if bin := os.Getenv(env); bin != "" {
		return bin, nil
	}
	out, err := exec.Command("go", "env", "GOPATH").Output()
	if err != nil {
		return "", fmt.Errorf("cannot find GOPATH (%w); set %s", err, env)
	}
	gopath := strings.Split(strings.TrimSpace(string(out)), string(os.PathListSeparator))[0]
	return filepath.Join(gopath, "bin", name), nil
}

// build compiles pkg of the tools module tools/<module> to a temporary
// file and renames it to bin, so that a concurrent build never leaves half
// a binary at bin.
func build(bin, module, pkg string) error {
	_, self, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(self), "..", "..", "tools", module)
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp-%d", bin, os.Getpid())
	cmd := exec.Command("go", "build", "-buildvcs=false", "-o", tmp, pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("go build in %s: %w\n%s", dir, err, out)
	}
	return os.Rename(tmp, bin)
}
