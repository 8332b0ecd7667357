package node_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/rs/zerolog"

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

// A process logs through a LogWriter and closes it before it exits: the
// lines logged until then are written, in order.
func ExampleNewLogWriter() {
	logs := node.NewLogWriter(os.Stdout)
	log := zerolog.New(logs)
	for i := range 3 {
		log.Info().Int("job", i).Msg("job succeeded")
	}
	logs.Close()
	// Output:
	// {"level":"info","job":0,"message":"job succeeded"}
	// {"level":"info","job":1,"message":"job succeeded"}
	// {"level":"info","job":2,"message":"job succeeded"}
}
