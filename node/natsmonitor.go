package node

import (
	"fmt"
	"net/http"
	"time"

	"github.com/jetfleet/jetfleet/healthz"
)

// natsServerChecks are the /up checks of the NATS servers' own health
// endpoints listed in NATS_MONITOR_URL (comma-separated monitoring URLs,
// e.g. http://10.0.0.5:8222): what a client connection cannot see, such
// as a store whose disk is full, is then named on /up (healthz.NATSServer).
// None when unset.
func natsServerChecks(getenv func(string) string) []healthz.Check {
	urls := SplitList(getenv("NATS_MONITOR_URL"))
	client := &http.Client{Timeout: 2 * time.Second}
	var checks []healthz.Check
	for i, u := range urls {
		name := "nats.server"
		if len(urls) > 1 {
			name = fmt.Sprintf("nats.server.%d", i+1)
		}
		checks = append(checks, healthz.NATSServer(name, u, client))
	}
	return checks
}
