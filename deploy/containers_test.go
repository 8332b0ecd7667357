package deploy_test

import (
	"debug/elf"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	composeFile = "compose/docker-compose.yml"
	dockerfile  = "Dockerfile"
)

// composeCommand finds Docker Compose: the docker plugin (v2) or the
// standalone docker-compose (v1, Debian's docker-compose); neither needs a
// running engine to validate a file.
func composeCommand(t *testing.T) []string {
	t.Helper()
	if docker, err := exec.LookPath("docker"); err == nil {
		if out, err := exec.Command(docker, "compose", "version").CombinedOutput(); err == nil && strings.Contains(string(out), "version") {
			return []string{docker, "compose"}
		}
	}
	return []string{tool(t, "docker-compose", "docker-compose")}
}

// Docker Compose validates the compose file against its schema, with the
// example environment file filling in the passwords; a copy with an
// unknown key is refused, so the validation is live. (Nothing is started:
// no container engine here.)
func TestComposeConfig(t *testing.T) {
	t.Parallel()
	cmd := composeCommand(t)
	check := func(file string) (string, error) {
		args := append(cmd[1:], "--project-directory", "compose", "--env-file", "compose/example.env", "-f", file, "config", "-q")
		return run(t, time.Minute, nil, cmd[0], args...)
	}
	if out, err := check(composeFile); err != nil {
		t.Fatalf("%s config: %v\n%s", strings.Join(cmd, " "), err, out)
	}
	bad := filepath.Join(t.TempDir(), "docker-compose.yml")
	writeFile(t, bad, strings.Replace(readFile(t, composeFile), "stop_signal:", "stop_signall:", 1))
	if out, err := check(bad); err == nil {
		t.Fatalf("%s config accepted an unknown key:\n%s", strings.Join(cmd, " "), out)
	}
}

// The files that no tool here can run agree with the tested ones: the same
// ports, flags, paths and stop times (Dockerfile, compose, Kubernetes).
func TestUntestedFilesAgree(t *testing.T) {
	t.Parallel()
	df := readFile(t, dockerfile)
	for _, want := range []string{"CGO_ENABLED=0 go build", "USER 65532", "/etc/jetfleet/nats",
		"COPY --from=build /out/jetfleet /out/catalog /usr/local/bin/", "ENTRYPOINT [\"/usr/local/bin/catalog\"]"} {
		if !strings.Contains(df, want) {
			t.Errorf("%s lacks %q", dockerfile, want)
		}
	}
	if strings.Count(df, "\nFROM ") < 1 || strings.Count(df, "FROM ") != 2 {
		t.Errorf("%s: want a two-stage build", dockerfile)
	}

	compose := readFile(t, composeFile)
	for _, want := range []string{
		"../haproxy/haproxy.cfg:", "../mariadb/primary.cnf:", "../mariadb/replica.cnf:",
		"/etc/jetfleet/nats/n1.conf", "/etc/jetfleet/nats/n2.conf", "/etc/jetfleet/nats/n3.conf",
		"nats-1:", "nats-2:", "nats-3:", // the hosts the NATS configs route to
		"stop_grace_period: 45s", "--drain-delay, 5s, --grace, 30s",
	} {
		if !strings.Contains(compose, want) {
			t.Errorf("%s lacks %q", composeFile, want)
		}
	}
	// NATS runs jetfleet's binary; migrate, the web nodes and the workers run
	// the service's (the image's entrypoint, named explicitly).
	if n := strings.Count(compose, "entrypoint: [/usr/local/bin/jetfleet]"); n != 1 {
		t.Errorf("%s: %d entrypoints of jetfleet, want 1 (the NATS nodes' anchor)", composeFile, n)
	}
	if n := strings.Count(compose, "entrypoint: [/usr/local/bin/catalog]"); n != 3 {
		t.Errorf("%s: %d entrypoints of the service's binary, want 3 (migrate, web, worker)", composeFile, n)
	}

	web := readFile(t, "k8s/web.yaml")
	for _, f := range []string{"k8s/web.yaml", "k8s/worker.yaml"} {
		if !strings.Contains(readFile(t, f), "command: [/usr/local/bin/catalog]") {
			t.Errorf("%s does not run the service's binary, /usr/local/bin/catalog", f)
		}
	}
	tgps := intField(t, "k8s/web.yaml", web, `terminationGracePeriodSeconds: (\d+)`)
	sleep := intField(t, "k8s/web.yaml", web, `sleep: \{seconds: (\d+)\}`)
	grace := flagDuration(t, "k8s/web.yaml", web, "grace")
	if time.Duration(tgps)*time.Second <= time.Duration(sleep)*time.Second+grace {
		t.Errorf("k8s/web.yaml: terminationGracePeriodSeconds %d not above the preStop sleep %ds plus --grace %s", tgps, sleep, grace)
	}
	webUnit := unitValue(readFile(t, "systemd/jetfleet-web.service"), "ExecStart")
	if drain := flagDuration(t, "systemd", webUnit, "drain-delay"); time.Duration(sleep)*time.Second != drain {
		t.Errorf("k8s/web.yaml: preStop sleep %ds, want the drain delay of the other deployments (%s)", sleep, drain)
	}
	for _, want := range []string{"path: /up", "path: /livez", "readinessProbe", "livenessProbe"} {
		if !strings.Contains(web, want) {
			t.Errorf("k8s/web.yaml lacks %q", want)
		}
	}
	worker := readFile(t, "k8s/worker.yaml")
	if tgps, grace := intField(t, "k8s/worker.yaml", worker, `terminationGracePeriodSeconds: (\d+)`),
		flagDuration(t, "k8s/worker.yaml", worker, "grace"); time.Duration(tgps)*time.Second <= grace {
		t.Errorf("k8s/worker.yaml: terminationGracePeriodSeconds %d not above --grace %s", tgps, grace)
	}
	values := readFile(t, "k8s/nats-values.yaml")
	for _, want := range []string{"replicas: 3", "system_account: SYS", "max_streams: 64", "$NATS_PASSWORD", "$NATS_SYS_PASSWORD"} {
		if !strings.Contains(values, want) {
			t.Errorf("k8s/nats-values.yaml lacks %q (as deploy/nats has it)", want)
		}
	}
}

func intField(t *testing.T, name, text, pattern string) int {
	t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("%s: no match for %s", name, pattern)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// dockerfileBuild returns the go build arguments of the Dockerfile's RUN
// line that builds /out/<out> from package pkg (./cmd/jetfleet,
// ./examples/catalog), up to -o, and its environment (CGO_ENABLED=0).
func dockerfileBuild(t *testing.T, out, pkg string) (env []string, args []string) {
	t.Helper()
	line := `(?m)^RUN (CGO_ENABLED=0) go (build .*) -o /out/` + regexp.QuoteMeta(out) + ` ` + regexp.QuoteMeta(pkg) + `$`
	m := regexp.MustCompile(line).FindStringSubmatch(readFile(t, dockerfile))
	if m == nil {
		t.Fatalf("%s: no RUN CGO_ENABLED=0 go build ... -o /out/%s %s line", dockerfile, out, pkg)
	}
	for _, f := range strings.Fields(m[2]) {
		args = append(args, strings.ReplaceAll(f, `"`, ""))
	}
	// -ldflags="-s -w" split on its space: join it back.
	for i := 0; i+1 < len(args); i++ {
		if strings.HasPrefix(args[i], "-ldflags=") && strings.HasPrefix(args[i+1], "-") && !strings.Contains(args[i+1], "=") {
			args[i] += " " + args[i+1]
			args = append(args[:i+1], args[i+2:]...)
		}
	}
	return []string{m[1]}, args
}

// isStatic reports whether an ELF executable has no dynamic loader.
func isStatic(t *testing.T, path string) bool {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false
		}
	}
	return true
}
