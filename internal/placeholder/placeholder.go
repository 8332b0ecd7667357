// Package placeholder refuses the example secrets jetfleet's deploy files
// ship (deploy/compose/example.env, deploy/systemd/jetfleet.env.example,
// the route URLs of deploy/nats): a deployment started with one of them
// would run with a password anyone who read the repository knows.
package placeholder

import (
	"bufio"
	"fmt"
	"os"
	"strings"
)

// Marker starts, or is part of, every placeholder secret in deploy/.
const Marker = "change-me"

// CheckSetting returns an error naming setting when value is a
// placeholder (it starts with Marker); nil otherwise, empty included.
// The error does not repeat the value.
func CheckSetting(setting, value string) error {
	if strings.HasPrefix(strings.TrimSpace(value), Marker) {
		return fmt.Errorf("%s is still the example's placeholder (%s…): set a secret of your own, e.g. from `openssl rand -base64 24`", setting, Marker)
	}
	return nil
}

// CheckFile returns an error naming path and the line when a line of it
// that is not a comment holds Marker (a route password left as shipped).
func CheckFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || strings.HasPrefix(line, "//") {
			continue
		}
		if strings.Contains(line, Marker) {
			return fmt.Errorf("%s line %d still holds the example's placeholder secret (%s…): replace it with a secret of your own, e.g. from `openssl rand -hex 24`", path, n, Marker)
		}
	}
	return sc.Err()
}
