package node_test

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/jetfleet/jetfleet/node"
)

// A buffer is not a terminal, so the logger writes JSON lines.
func ExampleNewLogger() {
	var buf bytes.Buffer
	log := node.NewLogger(&buf, "info", "")
	log.Debug().Msg("hidden at info level")
	log.Info().Str("queue", "high").Msg("worker started")
	var line map[string]any
	_ = json.Unmarshal(buf.Bytes(), &line)
	fmt.Println(line["level"], line["queue"], line["message"])
	// Output: info high worker started
}
