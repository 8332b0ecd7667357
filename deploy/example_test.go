package deploy_test

import (
	"fmt"
	"os"
	"regexp"
)

// How long each supervisor waits for a stopping web node or worker before
// it kills it, read from the shipped files: longer than the web node's
// drain delay (5s) plus the grace for running requests and jobs (30s)
// everywhere, so a clean stop is never cut short.
func Example() {
	for _, f := range []struct{ path, setting string }{
		{"systemd/jetfleet-web.service", `TimeoutStopSec=(\S+)`},
		{"systemd/jetfleet-worker@.service", `TimeoutStopSec=(\S+)`},
		{"supervisor/jetfleet-worker.conf", `stopwaitsecs=(\S+)`},
		{"compose/docker-compose.yml", `stop_grace_period: (\S+)`},
		{"k8s/web.yaml", `terminationGracePeriodSeconds: (\S+)`},
		{"k8s/worker.yaml", `terminationGracePeriodSeconds: (\S+)`},
	} {
		b, err := os.ReadFile(f.path)
		if err != nil {
			fmt.Println(err)
			continue
		}
		m := regexp.MustCompile(f.setting).FindSubmatch(b)
		if m == nil {
			fmt.Printf("%s: no %s\n", f.path, f.setting)
			continue
		}
		fmt.Printf("%-33s %s\n", f.path, m[0])
	}
	// Output:
	// systemd/jetfleet-web.service      TimeoutStopSec=45s
	// systemd/jetfleet-worker@.service  TimeoutStopSec=45s
	// supervisor/jetfleet-worker.conf   stopwaitsecs=45
	// compose/docker-compose.yml        stop_grace_period: 45s
	// k8s/web.yaml                      terminationGracePeriodSeconds: 45
	// k8s/worker.yaml                   terminationGracePeriodSeconds: 45
}
