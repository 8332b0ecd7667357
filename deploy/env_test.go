package deploy_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/examples/catalog/catalog"
	"github.com/jetfleet/jetfleet/readmodel"
	"github.com/jetfleet/jetfleet/sessions"
)

const envExample = "systemd/jetfleet.env.example"

// parseEnvFile reads KEY=value lines, refusing what systemd, sh and
// jetfleet's .env reader would read differently: quotes, spaces, "export".
func parseEnvFile(t *testing.T, path string) (map[string]string, []string) {
	t.Helper()
	vars := map[string]string{}
	var keys []string
	plain := regexp.MustCompile(`^([A-Z][A-Z0-9_]*)=([^\s'"\\$` + "`" + `]*)$`)
	for i, line := range strings.Split(readFile(t, path), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := plain.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("%s:%d: %q is not a plain KEY=value line (no quotes, spaces or $)", path, i+1, line)
		}
		vars[m[1]] = m[2]
		keys = append(keys, m[1])
	}
	return vars, keys
}

// The example environment file is valid for jetfleet's own parsers
// (readmodel.ConfigFromEnv, sessions.ConfigFromEnv, the catalog's
// ConfigFromEnv), reads the same through
// sh (as the Supervisor program sources it), and sets only variables that
// jetfleet's code or the NATS configs read: a misspelt name fails here.
func TestEnvExample(t *testing.T) {
	t.Parallel()
	vars, keys := parseEnvFile(t, envExample)
	// Its passwords are placeholders, refused until replaced.
	if _, err := readmodel.ConfigFromEnv(func(k string) string { return vars[k] }); err == nil || !strings.Contains(err.Error(), "DB_PASSWORD is still the example's placeholder") {
		t.Errorf("readmodel.ConfigFromEnv on %s as shipped: %v; want DB_PASSWORD refused as a placeholder", envExample, err)
	}
	getenv := func(k string) string {
		if strings.HasPrefix(vars[k], "change-me") {
			return "replaced-" + k
		}
		return vars[k]
	}
	db, err := readmodel.ConfigFromEnv(getenv)
	if err != nil {
		t.Fatalf("readmodel.ConfigFromEnv on %s: %v", envExample, err)
	}
	if db.Driver != readmodel.DriverMySQL || len(db.ReadHosts) != 2 || db.MaxReplicaLag != 5*time.Second {
		t.Errorf("read model settings %+v: want mysql with 2 replicas and 5s of lag", db)
	}
	sc, err := sessions.ConfigFromEnv(getenv)
	if err != nil {
		t.Fatalf("sessions.ConfigFromEnv on %s: %v", envExample, err)
	}
	if sc.Replicas != 3 || !sc.Cookie.Secure || sc.MaxBytes != 256<<20 {
		t.Errorf("session settings: %d replicas, secure cookie %v, bound %d bytes; want 3, true and 256 MiB", sc.Replicas, sc.Cookie.Secure, sc.MaxBytes)
	}

	cc, err := catalog.ConfigFromEnv(getenv)
	if err != nil {
		t.Fatalf("catalog.ConfigFromEnv on %s: %v", envExample, err)
	}
	if cc.ImageReplicas != 3 || cc.ImageStoreBytes != 1<<30 {
		t.Errorf("catalog settings: %d image replicas, image store bound %d bytes; want 3 and 1 GiB", cc.ImageReplicas, cc.ImageStoreBytes)
	}

	out, err := run(t, 30*time.Second, nil, "sh", "-c", `set -a && . "$0" && env`, envExample)
	if err != nil {
		t.Fatalf("sh cannot source %s: %v\n%s", envExample, err, out)
	}
	fromSh := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			fromSh[k] = v
		}
	}
	for _, k := range keys {
		if fromSh[k] != vars[k] {
			t.Errorf("%s: sh reads %s=%q, systemd %q", envExample, k, fromSh[k], vars[k])
		}
	}

	known := readSources(t)
	for _, k := range keys {
		if !strings.Contains(known, `"`+k+`"`) && !strings.Contains(known, "$"+k) {
			t.Errorf("%s sets %s, which no jetfleet code or NATS config reads", envExample, k)
		}
	}
}

// readSources is the text of the module's non-test Go files and of the NATS
// configs.
func readSources(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != ".." && (strings.HasPrefix(d.Name(), ".") || d.Name() == "data" || d.Name() == "testdata" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() && (strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") ||
			strings.HasPrefix(path, filepath.Join("..", "deploy", "nats")) && strings.HasSuffix(path, ".conf")) {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			b.Write(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}
