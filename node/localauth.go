package node

// The credentials of the NATS server `jetfleet up` embeds: generated on
// its first start, kept beside nats.url in the data directory, readable by
// their owner only, and used by every command run from that directory.

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// AuthFile is the file, inside the data directory, that holds the
// credentials of `jetfleet up`'s embedded NATS server as NATS_USER and
// NATS_PASSWORD lines (the .env format; `set -a; . data/nats.auth` hands
// them to the nats CLI). It is written with mode 0600.
const AuthFile = "nats.auth"

// LocalNATSUser is the user name of the credentials LocalNATSAuth makes.
const LocalNATSUser = "jetfleet"

// LocalNATSAuth returns the user and password in dataDir/nats.auth,
// generating a random password and writing the file (mode 0600) when it
// does not exist yet; created says it did.
func LocalNATSAuth(dataDir string) (user, password string, created bool, err error) {
	user, password, err = readLocalAuth(dataDir)
	if err == nil {
		return user, password, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", "", false, err
	}
	secret := make([]byte, 24)
	if _, err := rand.Read(secret); err != nil {
		return "", "", false, fmt.Errorf("%s: %w", AuthFile, err)
	}
	user, password = LocalNATSUser, base64.RawURLEncoding.EncodeToString(secret)
	if err := writeLocalAuth(dataDir, user, password); err != nil {
		return "", "", false, err
	}
	return user, password, true, nil
}

// writeLocalAuth writes dataDir/nats.auth with mode 0600, failing when
// it exists (two `up` starting at once keep the first one's).
func writeLocalAuth(dataDir, user, password string) error {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return fmt.Errorf("%s: %w", AuthFile, err)
	}
	path := filepath.Join(dataDir, AuthFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%s: %w", AuthFile, err)
	}
	content := "# The credentials of the NATS server `jetfleet up` runs from this directory.\n" +
		"# Commands run from here use them; keep this file to its owner (mode 0600).\n" +
		"NATS_USER=" + user + "\nNATS_PASSWORD=" + password + "\n"
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", AuthFile, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%s: %w", AuthFile, err)
	}
	return nil
}

// readLocalAuth reads the user and password of dataDir/nats.auth. A
// missing file is an error wrapping fs.ErrNotExist.
func readLocalAuth(dataDir string) (user, password string, err error) {
	path := filepath.Join(dataDir, AuthFile)
	f, err := os.Open(path)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", AuthFile, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, ok, err := parseDotEnvLine(sc.Text())
		if err != nil {
			return "", "", fmt.Errorf("%s: %w", path, err)
		}
		switch {
		case !ok:
		case key == "NATS_USER":
			user = val
		case key == "NATS_PASSWORD":
			password = val
		}
	}
	if err := sc.Err(); err != nil {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	if user == "" || password == "" {
		return "", "", fmt.Errorf("%s holds no NATS_USER and NATS_PASSWORD; delete it and restart `jetfleet up` to make new ones", path)
	}
	return user, password, nil
}

// withLocalAuth is getenv with NATS_USER and NATS_PASSWORD read from
// dataDir/nats.auth, when the file exists and getenv sets no NATS
// credential of its own.
func withLocalAuth(getenv func(string) string, dataDir string) (func(string) string, error) {
	for _, k := range []string{"NATS_USER", "NATS_TOKEN", "NATS_CREDS"} {
		if getenv(k) != "" {
			return getenv, nil
		}
	}
	user, password, err := readLocalAuth(dataDir)
	if errors.Is(err, fs.ErrNotExist) {
		return getenv, nil
	}
	if err != nil {
		return nil, err
	}
	return func(k string) string {
		switch k {
		case "NATS_USER":
			return user
		case "NATS_PASSWORD":
			return password
		}
		return getenv(k)
	}, nil
}
