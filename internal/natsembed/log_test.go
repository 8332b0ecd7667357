package natsembed_test

import (
	"strings"
	"testing"

	"github.com/jetfleet/jetfleet/internal/logtest"
	"github.com/jetfleet/jetfleet/internal/natsembed"
)

// The server's notices reach Config.Logger at info, or at debug with
// QuietNotices.
func TestServerLogsThroughLogger(t *testing.T) {
	for _, quiet := range []bool{false, true} {
		log, rec := logtest.New()
		srv, err := natsembed.Start(natsembed.Config{StoreDir: t.TempDir(), Logger: log, QuietNotices: quiet})
		if err != nil {
			t.Fatal(err)
		}
		srv.Shutdown()
		want := "info"
		if quiet {
			want = "debug"
		}
		var starting int
		for _, e := range rec.Entries() {
			if strings.Contains(e.Str("message"), "Starting nats-server") {
				starting++
				if e.Str("level") != want {
					t.Errorf("QuietNotices %v: notice %q at %s, want %s", quiet, e.Str("message"), e.Str("level"), want)
				}
			}
		}
		if starting != 1 {
			t.Errorf("QuietNotices %v: %d startup notices in %v", quiet, starting, rec.Entries())
		}
	}
}
