// Package kedatest runs KEDA's own nats-jetstream scaler (kedacore/keda
// v2.21.0) for tests, through tools/keda's kedalag: a ScaledObject of the
// deploy files, read with KEDA's API types, its trigger turned into the
// scaler as KEDA's operator does, and the scaler's metric read from a
// test's NATS monitoring endpoint. The binary is built from the separate
// tools module tools/keda (so jetfleet's go.mod does not carry KEDA's
// dependencies, every cloud SDK its scalers package links) into GOPATH/bin
// once and reused; .ci/run builds it before the tests. A test skips,
// saying why, only when it cannot be built.
package kedatest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/jetfleet/jetfleet/internal/toolbuild"
)

// Version is the KEDA release the tools module pins.
const Version = "v2.21.0"

// BinaryName is the file the binary is built to, in GOPATH/bin.
const BinaryName = "kedalag-" + Version

// buildTime is how long the test binary must have left to build kedalag
// itself: the first build takes about 12 minutes of CPU (15 minutes on two
// cores beside a test run), more than go test's default timeout of 10
// minutes leaves (.ci/run builds it first and runs with 25).
const buildTime = 20 * time.Minute

// Binary returns the kedalag binary: $JETFLEET_KEDALAG_BIN, else
// GOPATH/bin/kedalag-v2.21.0, built there from tools/keda when missing
// and the test has time for it (buildTime). It skips the test, saying how
// to build it, when it cannot be built or there is no time.
func Binary(t *testing.T) string {
	t.Helper()
	bin, err := toolbuild.Path("JETFLEET_KEDALAG_BIN", BinaryName)
	if err != nil {
		t.Skipf("KEDA: %v", err)
	}
	if _, err := os.Stat(bin); err == nil || os.Getenv("JETFLEET_KEDALAG_BIN") != "" {
		return bin
	}
	if deadline, ok := t.Deadline(); ok && time.Until(deadline) < buildTime {
		t.Skipf("KEDA %s's scaler is not built and building it takes longer than this test run has left (%s); "+
			"build it once with: go build -C tools/keda -o %s . (bash .ci/run does)", Version, time.Until(deadline).Round(time.Second), bin)
	}
	t.Logf("building KEDA %s's nats-jetstream scaler into %s from tools/keda (minutes, once)", Version, bin)
	if err := toolbuild.Build(bin, "keda", "."); err != nil {
		t.Skipf("KEDA %s's scaler could not be built, so this check cannot run: %v", Version, err)
	}
	return bin
}

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
