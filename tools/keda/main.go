// Command kedalag runs KEDA's own nats-jetstream scaler (kedacore/keda
// v2.21.0, pkg/scalers) against a NATS monitoring endpoint, for
// jetfleet's tests (internal/kedatest): it reads a ScaledObject from a
// YAML file with KEDA's API types, strictly (a field KEDA does not know
// fails), builds the scaler from its nats-jetstream trigger as KEDA's
// operator does, and asks it for its metric twice (the second time from
// the leader it found the first), printing one JSON line each:
//
//	{"metric":"s0-nats-jetstream-JOBS","value":7,"active":true,"target":16}
//
// The trigger's endpoint and account are for a Kubernetes cluster; the
// flags replace them with a test's.
//
// It is a module of its own so that jetfleet's go.mod does not carry
// KEDA's dependencies.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"github.com/kedacore/keda/v2/pkg/scalers"
	"github.com/kedacore/keda/v2/pkg/scalers/scalersconfig"
	v2 "k8s.io/api/autoscaling/v2"
	"sigs.k8s.io/yaml"
)

func main() {
	file := flag.String("file", "", "YAML file of ScaledObjects")
	name := flag.String("name", "", "the ScaledObject to use")
	endpoint := flag.String("endpoint", "", "replaces the trigger's natsServerMonitoringEndpoint")
	account := flag.String("account", "", "replaces the trigger's account")
	flag.Parse()
	if err := run(*file, *name, *endpoint, *account); err != nil {
		fmt.Fprintln(os.Stderr, "kedalag:", err)
		os.Exit(1)
	}
}

func run(file, name, endpoint, account string) error {
	so, err := scaledObject(file, name)
	if err != nil {
		return err
	}
	if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "nats-jetstream" {
		return fmt.Errorf("%s: want one nats-jetstream trigger, have %v", name, so.Spec.Triggers)
	}
	trigger := so.Spec.Triggers[0]
	meta := map[string]string{}
	for k, v := range trigger.Metadata {
		meta[k] = v
	}
	if endpoint != "" {
		meta["natsServerMonitoringEndpoint"] = endpoint
	}
	if account != "" {
		meta["account"] = account
	}
	metricType := trigger.MetricType
	if metricType == "" {
		metricType = v2.AverageValueMetricType // KEDA's default for a trigger
	}
	scaler, err := scalers.NewNATSJetStreamScaler(&scalersconfig.ScalerConfig{
		ScalableObjectName:      so.Name,
		ScalableObjectNamespace: so.Namespace,
		ScalableObjectType:      "ScaledObject",
		TriggerMetadata:         meta,
		TriggerType:             trigger.Type,
		TriggerIndex:            0,
		MetricType:              metricType,
		GlobalHTTPTimeout:       5 * time.Second,
	})
	if err != nil {
		return err
	}
	ctx := context.Background()
	defer scaler.Close(ctx)
	spec := scaler.GetMetricSpecForScaling(ctx)
	if len(spec) != 1 || spec[0].External == nil {
		return fmt.Errorf("the scaler's metric spec is %v", spec)
	}
	metric := spec[0].External.Metric.Name
	target := spec[0].External.Target.AverageValue
	for range 2 {
		values, active, err := scaler.GetMetricsAndActivity(ctx, metric)
		if err != nil {
			return err
		}
		if len(values) != 1 {
			return fmt.Errorf("the scaler gave %d values", len(values))
		}
		line := map[string]any{"metric": metric, "value": values[0].Value.AsApproximateFloat64(), "active": active}
		if target != nil {
			line["target"] = target.AsApproximateFloat64()
		}
		if err := json.NewEncoder(os.Stdout).Encode(line); err != nil {
			return err
		}
	}
	return nil
}

// scaledObject is the ScaledObject called name in file, a YAML stream of
// documents, decoded with KEDA's types and no unknown field allowed.
func scaledObject(file, name string) (*kedav1alpha1.ScaledObject, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	for doc := range bytes.SplitSeq(data, []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var so kedav1alpha1.ScaledObject
		if err := yaml.UnmarshalStrict(doc, &so); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if so.APIVersion != "keda.sh/v1alpha1" || so.Kind != "ScaledObject" {
			return nil, fmt.Errorf("%s: %s %s is not a keda.sh/v1alpha1 ScaledObject", file, so.APIVersion, so.Kind)
		}
		if so.Name == name {
			return &so, nil
		}
	}
	return nil, errors.New(file + " has no ScaledObject " + name)
}

// stripComments drops doc's comment lines, so that a document of comments
// alone counts as empty.
func stripComments(doc []byte) []byte {
	var out []byte
	for line := range bytes.Lines(doc) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}
