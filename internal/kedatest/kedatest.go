// Package kedatest runs KEDA's own nats-jetstream scaler (kedacore/keda
// v2.21.0) for tests, through tools/keda's kedalag: a ScaledObject of the
// deploy files, read with KEDA's API types, its trigger turned into the
// scaler as KEDA's operator does, and the scaler's metric read from a
// test's NATS monitoring endpoint. The binary is built from the separate
// tools module tools/keda (so jetfleet's go.mod does not carry KEDA's
// dependencies, every cloud SDK its scalers package links) into GOPATH/bin
// once and reused; .ci/run builds it before the tests. A test skips,
// saying why and how to build it, only when it cannot be built or its run
// has not the time (toolbuild.Binary).
package kedatest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/internal/toolbuild"
)

// Version is the KEDA release the tools module pins.
const Version = "v2.21.0"

// tool is how the binary is found and built.
func tool() toolbuild.Tool {
	return toolbuild.Tool{
		Name:    "KEDA " + Version + "'s scaler",
		File:    "kedalag-" + Version,
		Env:     "JETFLEET_KEDALAG_BIN",
		Module:  "keda",
		Package: ".",
		// About 12 minutes of CPU the first time: 15 minutes on two cores
		// beside a test run.
		BuildTime: 20 * time.Minute,
	}
}

// Binary returns the kedalag binary: $JETFLEET_KEDALAG_BIN, else
// GOPATH/bin/kedalag-v2.21.0, built there from tools/keda when missing.
// It skips the test, saying how to build it, when it cannot be built or
// the test run has not the time (toolbuild.Binary).
func Binary(t testing.TB) string { return toolbuild.Binary(t, tool()) }

// Reading is one answer of the scaler: its metric's name and value (the
// consumer's num_pending + num_ack_pending), whether it would activate
// the workload, and the trigger's target per replica (lagThreshold).
type Reading struct {
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	Active bool    `json:"active"`
	Target float64 `json:"target"`
}

// Scale asks KEDA's scaler, built from the ScaledObject called name in
// the YAML file, for its metric twice (the second answer comes from the
// consumer's leader the first one found), with the trigger's monitoring
// endpoint and account replaced by endpoint and account.
func Scale(bin, file, name, endpoint, account string) ([]Reading, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "-file", file, "-name", name, "-endpoint", endpoint, "-account", account)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("kedalag: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	var out []Reading
	dec := json.NewDecoder(&stdout)
	for dec.More() {
		var r Reading
		if err := dec.Decode(&r); err != nil {
			return nil, fmt.Errorf("kedalag's output: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}
