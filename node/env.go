package node

// Settings the way Laravel users expect them: from the environment, with a
// .env file in the working directory filling in what the environment
// leaves unset, and from there into NATS connection options.

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/jetfleet/jetfleet/internal/placeholder"
)

// DefaultNATSURL is where jetfleet looks for NATS when nothing says otherwise.
const DefaultNATSURL = "nats://127.0.0.1:4222"

// URLFile is the file, inside the data directory, where `jetfleet up` and
// `jetfleet nats` record the client URL of the server they started.
const URLFile = "nats.url"

// LoadDotEnv sets, from the KEY=VALUE lines of path, every variable that the
// process environment does not set already. A missing file is not an error.
// Lines may be blank, comments (#), or prefixed with "export"; values may be
// wrapped in single or double quotes.
func LoadDotEnv(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		key, val, ok, err := parseDotEnvLine(sc.Text())
		if err != nil {
			return fmt.Errorf("%s line %d: %w", path, n, err)
		}
		if !ok {
			continue
		}
		if _, set := os.LookupEnv(key); !set {
			if err := os.Setenv(key, val); err != nil {
				return fmt.Errorf("%s line %d: %w", path, n, err)
			}
		}
	}
	return sc.Err()
}

func parseDotEnvLine(line string) (key, val string, ok bool, err error) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return "", "", false, nil
	}
	line = strings.TrimPrefix(line, "export ")
	key, val, found := strings.Cut(line, "=")
	key = strings.TrimSpace(key)
	if !found || key == "" || strings.ContainsAny(key, " \t") {
		return "", "", false, fmt.Errorf("want KEY=VALUE, got %q", line)
	}
	val = strings.TrimSpace(val)
	if inner, ok := quoted(val); ok {
		return key, inner, true, nil
	}
	if i := strings.Index(val, " #"); i >= 0 {
		val = strings.TrimSpace(val[:i])
	}
	return key, val, true, nil
}

// quoted is what the quotes of a quoted .env value hold: "value" or
// 'value', alone or followed by a comment ("value" # why).
func quoted(val string) (string, bool) {
	if len(val) < 2 || val[0] != '"' && val[0] != '\'' {
		return "", false
	}
	if val[len(val)-1] == val[0] {
		return val[1 : len(val)-1], true
	}
	end := strings.IndexByte(val[1:], val[0]) + 1
	if end == 0 {
		return "", false
	}
	if rest := strings.TrimSpace(val[end+1:]); strings.HasPrefix(rest, "#") && rest != val[end+1:] {
		return val[1:end], true
	}
	return "", false
}

// NATSURL is the server to connect to: NATS_URL when set, else the URL that
// `jetfleet up` wrote to dataDir/nats.url, else DefaultNATSURL.
func NATSURL(getenv func(string) string, dataDir string) string {
	u, _ := natsURL(getenv, dataDir)
	return u
}

// natsURL is NATSURL, and whether it came from dataDir/nats.url.
// NATS_URL set to the very URL the file holds counts as coming from it.
func natsURL(getenv func(string) string, dataDir string) (url string, fromDataDir bool) {
	var recorded string
	if b, err := os.ReadFile(filepath.Join(dataDir, URLFile)); err == nil {
		recorded = strings.TrimSpace(string(b))
	}
	if u := getenv("NATS_URL"); u != "" {
		return u, u == recorded
	}
	if recorded != "" {
		return recorded, true
	}
	return DefaultNATSURL, false
}

// WriteNATSURL records url in dataDir/nats.url for later commands.
func WriteNATSURL(dataDir, url string) error {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("nats.url: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dataDir, URLFile), []byte(url+"\n"), 0o644); err != nil {
		return fmt.Errorf("nats.url: %w", err)
	}
	return nil
}

// NATSOptions turns NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_CREDS and
// NATS_TLS_CA (plus NATS_TLS_CERT/NATS_TLS_KEY) into connection options.
func NATSOptions(getenv func(string) string, name string) []nats.Option {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
	}
	if u := getenv("NATS_USER"); u != "" {
		opts = append(opts, nats.UserInfo(u, getenv("NATS_PASSWORD")))
	}
	if tok := getenv("NATS_TOKEN"); tok != "" {
		opts = append(opts, nats.Token(tok))
	}
	if creds := getenv("NATS_CREDS"); creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	if ca := getenv("NATS_TLS_CA"); ca != "" {
		opts = append(opts, nats.RootCAs(ca))
	}
	if cert, key := getenv("NATS_TLS_CERT"), getenv("NATS_TLS_KEY"); cert != "" && key != "" {
		opts = append(opts, nats.ClientCert(cert, key))
	}
	return opts
}

// checkClientCert refuses half a client certificate: NATSOptions uses
// NATS_TLS_CERT and NATS_TLS_KEY only together, so one without the other
// would connect without the certificate the server was meant to see.
func checkClientCert(getenv func(string) string) error {
	cert, key := getenv("NATS_TLS_CERT"), getenv("NATS_TLS_KEY")
	switch {
	case cert != "" && key == "":
		return errors.New("NATS_TLS_CERT is set but NATS_TLS_KEY is not: a client certificate needs both")
	case key != "" && cert == "":
		return errors.New("NATS_TLS_KEY is set but NATS_TLS_CERT is not: a client certificate needs both")
	}
	return nil
}

// ConnectNATS connects to NATSURL with NATSOptions. The error names the URL
// tried, so "NATS unreachable" always says where; no password or token
// (in the URL, NATS_PASSWORD or NATS_TOKEN) appears in it.
//
// When the URL is the one `jetfleet up` recorded in dataDir/nats.url and
// no NATS credential is set (NATS_USER, NATS_TOKEN, NATS_CREDS), the
// credentials `up` generated for its server are read from
// dataDir/nats.auth (AuthFile).
func ConnectNATS(getenv func(string) string, dataDir, name string) (*nats.Conn, jetstream.JetStream, error) {
	url, fromDataDir := natsURL(getenv, dataDir)
	if fromDataDir {
		var err error
		if getenv, err = withLocalAuth(getenv, dataDir); err != nil {
			return nil, nil, err
		}
	}
	for _, setting := range []string{"NATS_PASSWORD", "NATS_TOKEN"} {
		if err := placeholder.CheckSetting(setting, getenv(setting)); err != nil {
			return nil, nil, err
		}
	}
	if err := checkClientCert(getenv); err != nil {
		return nil, nil, err
	}
	secrets := natsSecrets(getenv, url)
	nc, err := nats.Connect(url, NATSOptions(getenv, name)...)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to NATS at %s: %w (set NATS_URL, or run `jetfleet up` in this directory)", RedactURL(url), scrub(err, secrets...))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream on %s: %w", RedactURL(url), scrub(err, secrets...))
	}
	return nc, js, nil
}

// ConnectedURL is the URL nc is connected to, with its user information
// hidden (RedactURL): nats.Conn.ConnectedUrlRedacted hides a password but
// shows a token written as nats://TOKEN@host. While nc reconnects (its
// server died) it is the servers nc knows, comma separated.
func ConnectedURL(nc *nats.Conn) string {
	if u := nc.ConnectedUrl(); u != "" {
		return RedactURL(u)
	}
	servers := nc.Servers()
	for i, s := range servers {
		servers[i] = RedactURL(s)
	}
	return strings.Join(servers, ",")
}
