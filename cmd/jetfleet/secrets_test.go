package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetfleet/jetfleet/internal/mariadbtest"
	"github.com/jetfleet/jetfleet/internal/natstest"
	"github.com/jetfleet/jetfleet/internal/proctest"
)

// natsURLForms are NATS_URL values whose secrets must never be printed:
// a password, a token, a list of both, and a URL the client cannot parse
// (its parse error would quote it).
var natsURLForms = []struct {
	name, url string
	secrets   []string
}{
	{"password", "nats://alice:S3cretPassw0rd@127.0.0.1:1", []string{"S3cretPassw0rd"}},
	{"token", "nats://T0kenT0kenT0ken@127.0.0.1:1", []string{"T0kenT0kenT0ken"}},
	{"list", "nats://bob:L1stPassw0rd@127.0.0.1:1, nats://L1stT0ken@127.0.0.1:2", []string{"L1stPassw0rd", "L1stT0ken"}},
	{"unparseable", "nats://carol:Sp ace%zzSecret@127.0.0.1:1", []string{"Sp ace%zzSecret", "zzSecret"}},
}

// assertNoSecret fails when any secret appears in the output of a command.
func assertNoSecret(t *testing.T, what, stdout, stderr string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if strings.Contains(stdout, s) || strings.Contains(stderr, s) {
			t.Errorf("%s printed the secret %q:\nstdout: %s\nstderr: %s", what, s, stdout, stderr)
		}
	}
}

// TestNoNATSSecretInMessages runs every command that takes NATS_URL (and
// a node-built binary's serve and work) against an unreachable server
// named by URLs holding passwords and tokens: each fails, naming the
// server, and prints none of the secrets.
func TestNoNATSSecretInMessages(t *testing.T) {
	minimal, cleanup, err := proctest.Build("../../examples/minimal", "minimal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	commands := []struct {
		bin  string
		args []string
	}{
		{binary, []string{"queue", "stats"}},
		{binary, []string{"dispatch", "default", "ping", "{}"}},
		{binary, []string{"schedule", "ls"}},
		{binary, []string{"work"}},
		{binary, []string{"serve", "--listen", "127.0.0.1:0"}},
		{binary, []string{"up", "--listen", "127.0.0.1:0", "--no-workers"}},
		{minimal, []string{"serve", "--listen", "127.0.0.1:0"}},
		{minimal, []string{"work"}},
	}
	for _, form := range natsURLForms {
		for _, c := range commands {
			what := fmt.Sprintf("NATS_URL=%s %s %s", form.name, c.bin[strings.LastIndex(c.bin, "/")+1:], strings.Join(c.args, " "))
			r := proctest.Run(t, c.bin, t.TempDir(), testEnv("NATS_URL="+form.url), "", c.args...)
			if r.Code != 1 || !strings.Contains(r.Stderr, "127.0.0.1:1") {
				t.Errorf("%s: exit %d, want 1 with an error naming the server:\n%s", what, r.Code, r.Stderr)
			}
			assertNoSecret(t, what, r.Stdout, r.Stderr, form.secrets...)
		}
	}
}

// TestNoDatabasePasswordInMessages: `migrate` and `up` with a wrong
// DB_PASSWORD against a real MariaDB, and with an unreachable database
// host, fail naming the database, and never print DB_PASSWORD.
func TestNoDatabasePasswordInMessages(t *testing.T) {
	pair := mariadbtest.Start(t)
	srv := natstest.Start(t)
	const secret = "Wr0ngDbPassw0rd"
	hosts := map[string]string{"wrong password": pair.Primary.Addr(), "unreachable host": "127.0.0.1:1"}
	for name, addr := range hosts {
		host, port, _ := strings.Cut(addr, ":")
		env := testEnv("DB_CONNECTION=mysql", "DB_HOST="+host, "DB_PORT="+port, "DB_DATABASE=catalog",
			"DB_USERNAME="+mariadbtest.AppUser, "DB_PASSWORD="+secret, "NATS_URL="+srv.ClientURL())
		for _, args := range [][]string{{"migrate"}, {"up", "--listen", "127.0.0.1:0", "--no-workers"}} {
			what := name + ": jetfleet " + strings.Join(args, " ")
			r := runJF(t, t.TempDir(), env, "", args...)
			if r.Code != 1 || !strings.Contains(r.Stderr, addr) {
				t.Errorf("%s: exit %d, want 1 with an error naming %s:\n%s", what, r.Code, addr, r.Stderr)
			}
			assertNoSecret(t, what, r.Stdout, r.Stderr, secret)
		}
	}
}

// TestPlaceholderSecretsAreRefused: deploy/'s example secrets (change-me-…)
// stop a process at start, naming the setting or the line: a NATS node
// whose configuration still holds the route placeholder or reads a
// placeholder password, and a client (dispatch) given one.
func TestPlaceholderSecretsAreRefused(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "n1.conf")
	body := "# replace route-secret-change-me\nlisten: 127.0.0.1:-1\ncluster {\n  name: c\n  listen: 127.0.0.1:-1\n  routes: [\"nats://route:route-secret-change-me@127.0.0.1:1\"]\n}\n"
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	secrets := testEnv("NATS_PASSWORD=s3cret-of-my-own", "NATS_SYS_PASSWORD=another-s3cret")
	for _, c := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"route placeholder", secrets, []string{"nats", "--config", conf, "--data", dir}, "n1.conf line 6 still holds the example's placeholder secret"},
		{"password placeholder", testEnv("NATS_PASSWORD=change-me-app", "NATS_SYS_PASSWORD=another-s3cret"), []string{"nats", "--config", conf, "--data", dir}, "NATS_PASSWORD is still the example's placeholder"},
		{"client", testEnv("NATS_URL=nats://127.0.0.1:1", "NATS_USER=jetfleet", "NATS_PASSWORD=change-me-app"), []string{"dispatch", "default", "k", "{}"}, "NATS_PASSWORD is still the example's placeholder"},
	} {
		r := runJF(t, dir, c.env, "", c.args...)
		if r.Code != 1 || !strings.Contains(r.Stderr, c.want) || strings.Contains(r.Stderr, "connect to NATS") {
			t.Errorf("%s: exit %d, stderr %q; want 1 and %q, before any connection", c.name, r.Code, r.Stderr, c.want)
		}
	}
}
