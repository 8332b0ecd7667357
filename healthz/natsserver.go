package healthz

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// NATSServer is a check of a NATS server's own health: its monitoring
// endpoint's /healthz (nats-server's `http_port`, `jetfleet nats
// --monitor-listen`), at monitorURL ("http://127.0.0.1:8222"). It fails
// with the server's own words when the server reports a problem that a
// client connection cannot see, above all a JetStream store that cannot
// write: when the store's filesystem is full, nats-server stops storing
// into the stream, answers no publish (a dispatch only times out) and keeps
// the write error until it is restarted, while every client request that
// only reads still succeeds. The error then reads
//
//	NATS server http://127.0.0.1:8222: JetStream stream '$G > JOBS' write error: write .../1.blk: no space left on device
//
// The check is not Critical: the server also reports passing states (a
// replica catching up, an election) that do not stop this node from
// serving, so a failure degrades the node and says why instead of taking
// it out of the balancer. client is used for the request (nil:
// http.DefaultClient; the check's Timeout bounds it).
func NATSServer(name, monitorURL string, client *http.Client) Check {
	if client == nil {
		client = http.DefaultClient
	}
	base := strings.TrimRight(monitorURL, "/")
	return Check{Name: name, Run: func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
		if err != nil {
			return fmt.Errorf("NATS server %s: %w", base, err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("NATS server %s: health not reachable: %w", base, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var h struct {
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		if err := json.Unmarshal(body, &h); err != nil {
			return fmt.Errorf("NATS server %s: /healthz answered %d with no health report: %w", base, resp.StatusCode, err)
		}
		if h.Status == "ok" && resp.StatusCode == http.StatusOK {
			return nil
		}
		if h.Error == "" {
			h.Error = "status " + h.Status
		}
		return fmt.Errorf("NATS server %s: %s", base, h.Error)
	}}
}
