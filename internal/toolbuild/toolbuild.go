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
)

// Path is where binary name is looked for: the value of env when set, else
// GOPATH/bin/name.
func Path(env, name string) (string, error) {
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

// Build compiles pkg of the tools module tools/<module> to a temporary
// file and renames it to bin, so that a concurrent build never leaves half
// a binary at bin.
func Build(bin, module, pkg string) error {
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
