package node

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/jetfleet/jetfleet/healthz"
)

// natsServerChecks are the /up checks of the NATS servers' own health
// endpoints listed in NATS_MONITOR_URL (comma-separated monitoring URLs,
// e.g. http://10.0.0.5:8222): what a client connection cannot see, such
// as a store whose disk is full, is then named on /up (healthz.NATSServer).
// None when unset. A URL that is not http(s)://host[:port] is an error
// naming the setting: the check could never answer.
func natsServerChecks(getenv func(string) string) ([]healthz.Check, error) {
	urls := SplitList(getenv("NATS_MONITOR_URL"))
	client := &http.Client{Timeout: 2 * time.Second}
	var checks []healthz.Check
	for i, u := range urls {
		if p, err := url.Parse(u); err != nil || p.Scheme != "http" && p.Scheme != "https" || p.Host == "" {
			return nil, fmt.Errorf("NATS_MONITOR_URL: %q is not a monitoring URL such as http://10.0.0.5:8222", u)
		}
		name := "nats.server"
		if len(urls) > 1 {
			name = fmt.Sprintf("nats.server.%d", i+1)
		}
		checks = append(checks, healthz.NATSServer(name, u, client))
	}
	return checks, nil
}
