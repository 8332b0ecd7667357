package deploy_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/jetfleet/jetfleet/bus"
)

// scaledObject is KEDA's ScaledObject (keda.sh/v1alpha1) with every field
// its CRD (KEDA 2.x, config/crd/bases/keda.sh_scaledobjects.yaml) allows in
// a spec: decoding with KnownFields refuses any other, so a misspelt
// field fails here rather than being ignored by the cluster.
type scaledObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name        string            `yaml:"name"`
		Namespace   string            `yaml:"namespace"`
		Labels      map[string]string `yaml:"labels"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Spec struct {
		ScaleTargetRef struct {
			APIVersion             string `yaml:"apiVersion"`
			Kind                   string `yaml:"kind"`
			Name                   string `yaml:"name"`
			EnvSourceContainerName string `yaml:"envSourceContainerName"`
		} `yaml:"scaleTargetRef"`
		PollingInterval       *int           `yaml:"pollingInterval"`
		CooldownPeriod        *int           `yaml:"cooldownPeriod"`
		InitialCooldownPeriod *int           `yaml:"initialCooldownPeriod"`
		IdleReplicaCount      *int           `yaml:"idleReplicaCount"`
		MinReplicaCount       *int           `yaml:"minReplicaCount"`
		MaxReplicaCount       *int           `yaml:"maxReplicaCount"`
		Fallback              map[string]any `yaml:"fallback"`
		Advanced              map[string]any `yaml:"advanced"`
		Triggers              []struct {
			Type              string            `yaml:"type"`
			Name              string            `yaml:"name"`
			Metadata          map[string]string `yaml:"metadata"`
			MetricType        string            `yaml:"metricType"`
			UseCachedMetrics  bool              `yaml:"useCachedMetrics"`
			AuthenticationRef *struct {
				Name string `yaml:"name"`
				Kind string `yaml:"kind"`
			} `yaml:"authenticationRef"`
		} `yaml:"triggers"`
	} `yaml:"spec"`
}

// triggerMetadata is the metadata each scaler documents (KEDA 2.21's
// scalers: nats_jetstream_scaler.go and prometheus_scaler.go), required
// first.
var triggerMetadata = map[string]struct{ required, optional []string }{
	"nats-jetstream": {
		required: []string{"natsServerMonitoringEndpoint", "stream", "consumer", "account"},
		optional: []string{"accountID", "lagThreshold", "activationLagThreshold", "useHttps"},
	},
	"prometheus": {
		required: []string{"serverAddress", "query", "threshold"},
		optional: []string{"activationThreshold", "queryParameters", "namespace", "customHeaders", "ignoreNullValues", "unsafeSsl", "awsRegion", "timeout", "identityOwner"},
	},
}

// deployment is the part of a Deployment the checks read.
type deployment struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Template struct {
			Spec struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				Containers                    []struct {
					Args           []string `yaml:"args"`
					ReadinessProbe probe    `yaml:"readinessProbe"`
					LivenessProbe  probe    `yaml:"livenessProbe"`
					Ports          []struct {
						Name          string `yaml:"name"`
						ContainerPort int    `yaml:"containerPort"`
					} `yaml:"ports"`
				} `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type probe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

// decodeAll decodes every document of the YAML file path with fn.
func decodeAll(t *testing.T, path string, strict bool, fn func(*yaml.Decoder) error) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader([]byte(readFile(t, path))))
	dec.KnownFields(strict)
	for i := 0; ; i++ {
		err := fn(dec)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("%s, document %d: %v", path, i+1, err)
		}
	}
}

func readScaledObjects(t *testing.T, path string) map[string]scaledObject {
	out := map[string]scaledObject{}
	decodeAll(t, path, true, func(dec *yaml.Decoder) error {
		var so scaledObject
		if err := dec.Decode(&so); err != nil {
			return err
		}
		if so.APIVersion != "keda.sh/v1alpha1" || so.Kind != "ScaledObject" {
			return fmt.Errorf("%s %s is not a keda.sh/v1alpha1 ScaledObject", so.APIVersion, so.Kind)
		}
		out[so.Metadata.Name] = so
		return nil
	})
	return out
}

func readDeployments(t *testing.T, path string) map[string]deployment {
	out := map[string]deployment{}
	decodeAll(t, path, false, func(dec *yaml.Decoder) error {
		var d deployment
		if err := dec.Decode(&d); err != nil {
			return err
		}
		if d.Kind == "Deployment" {
			out[d.Metadata.Name] = d
		}
		return nil
	})
	return out
}

// flag is the value of --name in args.
func flag(args []string, name string) string {
	if i := slices.Index(args, "--"+name); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

// TestKEDAScaledObjects parses the per-queue worker Deployments and both
// KEDA files, checks every ScaledObject against the fields KEDA's CRD and
// its scalers document, and checks that they agree with each other and
// with the tested files: each queue's Deployment is the target of one
// ScaledObject in each file (same names, so one file replaces the other),
// a nats-jetstream trigger reads stream JOBS, consumer q-<its queue>,
// account APP of deploy/nats, on the monitoring port of nats-values.yaml,
// a prometheus trigger queries the recording rule of alerts.yml for its
// queue, and both thresholds are the workers' --concurrency; the workers
// (these and worker.yaml's) serve their probes with --health-listen.
func TestKEDAScaledObjects(t *testing.T) {
	t.Parallel()
	workers := readDeployments(t, "k8s/workers-per-queue.yaml")
	jetstreamSOs := readScaledObjects(t, "k8s/keda-nats-jetstream.yaml")
	promSOs := readScaledObjects(t, "k8s/keda-prometheus.yaml")
	if len(workers) == 0 || !slices.Equal(slices.Sorted(maps.Keys(jetstreamSOs)), slices.Sorted(maps.Keys(workers))) ||
		!slices.Equal(slices.Sorted(maps.Keys(promSOs)), slices.Sorted(maps.Keys(workers))) {
		t.Fatalf("ScaledObjects %v (nats-jetstream) and %v (prometheus) for Deployments %v: want one of each per Deployment, named alike",
			slices.Sorted(maps.Keys(jetstreamSOs)), slices.Sorted(maps.Keys(promSOs)), slices.Sorted(maps.Keys(workers)))
	}
	for _, d := range readDeployments(t, "k8s/worker.yaml") {
		checkWorkerProbes(t, "k8s/worker.yaml", d)
	}
	for name, d := range workers {
		checkWorkerProbes(t, "k8s/workers-per-queue.yaml", d)
		args := d.Spec.Template.Spec.Containers[0].Args
		queue, concurrency := flag(args, "queue"), flag(args, "concurrency")
		if strings.ContainsAny(queue, ",:") || queue == "" {
			t.Errorf("%s takes %q: a Deployment scaled on one queue must take that queue alone", name, queue)
		}
		for file, so := range map[string]scaledObject{"k8s/keda-nats-jetstream.yaml": jetstreamSOs[name], "k8s/keda-prometheus.yaml": promSOs[name]} {
			checkScaledObject(t, file, so, name)
			checkTrigger(t, file, so, queue, concurrency)
		}
	}
}

// checkWorkerProbes checks that a worker Deployment serves /livez and
// /readyz on the port its --health-listen names.
func checkWorkerProbes(t *testing.T, file string, d deployment) {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	addr := flag(c.Args, "health-listen")
	_, port, _ := strings.Cut(addr, ":")
	if !strings.HasPrefix(addr, "0.0.0.0:") {
		t.Errorf("%s %s: --health-listen %q, want 0.0.0.0:<port> (the kubelet probes the pod's address)", file, d.Metadata.Name, addr)
	}
	if c.LivenessProbe.HTTPGet.Path != "/livez" || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("%s %s: probes %q and %q, want /livez and /readyz", file, d.Metadata.Name, c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path)
	}
	for _, p := range c.Ports {
		if p.Name == c.LivenessProbe.HTTPGet.Port && p.Name == c.ReadinessProbe.HTTPGet.Port && strconv.Itoa(p.ContainerPort) == port {
			return
		}
	}
	t.Errorf("%s %s: the probes' port is not the container port of --health-listen %s", file, d.Metadata.Name, addr)
}

// checkScaledObject checks the parts KEDA validates itself.
func checkScaledObject(t *testing.T, file string, so scaledObject, target string) {
	t.Helper()
	sp := so.Spec
	if sp.ScaleTargetRef.Name != target || len(sp.Triggers) != 1 {
		t.Errorf("%s %s: target %q with %d triggers, want %s and one trigger", file, so.Metadata.Name, sp.ScaleTargetRef.Name, len(sp.Triggers), target)
	}
	if sp.MinReplicaCount == nil || sp.MaxReplicaCount == nil || *sp.MinReplicaCount > *sp.MaxReplicaCount {
		t.Errorf("%s %s: minReplicaCount must be set and at most maxReplicaCount", file, so.Metadata.Name)
	}
	for _, tr := range sp.Triggers {
		doc, ok := triggerMetadata[tr.Type]
		if !ok {
			t.Errorf("%s %s: trigger type %q", file, so.Metadata.Name, tr.Type)
			continue
		}
		for _, k := range doc.required {
			if tr.Metadata[k] == "" {
				t.Errorf("%s %s: %s trigger lacks %s", file, so.Metadata.Name, tr.Type, k)
			}
		}
		for k := range tr.Metadata {
			if !slices.Contains(doc.required, k) && !slices.Contains(doc.optional, k) {
				t.Errorf("%s %s: %s trigger has %q, which KEDA does not read", file, so.Metadata.Name, tr.Type, k)
			}
		}
	}
}

// checkTrigger checks a trigger against the queue its target takes.
func checkTrigger(t *testing.T, file string, so scaledObject, queue, concurrency string) {
	t.Helper()
	if len(so.Spec.Triggers) == 0 {
		return
	}
	tr := so.Spec.Triggers[0]
	m := tr.Metadata
	switch tr.Type {
	case "nats-jetstream":
		_, port, _ := strings.Cut(m["natsServerMonitoringEndpoint"], ":")
		want := map[string]string{"stream": bus.JobsStream, "consumer": bus.ConsumerName(queue), "account": appAccount(t),
			"lagThreshold": concurrency, "port": monitorPort(t)}
		got := map[string]string{"stream": m["stream"], "consumer": m["consumer"], "account": m["account"], "lagThreshold": m["lagThreshold"], "port": port}
		if !maps.Equal(got, want) {
			t.Errorf("%s %s: %v, want %v", file, so.Metadata.Name, got, want)
		}
	case "prometheus":
		rule := regexp.MustCompile(`record: (\S+)`).FindStringSubmatch(readFile(t, "prometheus/alerts.yml"))
		if rule == nil || !strings.Contains(m["query"], rule[1]+`{queue="`+queue+`"}`) || m["threshold"] != concurrency {
			t.Errorf("%s %s: query %q threshold %s, want the recording rule of prometheus/alerts.yml for queue %s and threshold %s",
				file, so.Metadata.Name, m["query"], m["threshold"], queue, concurrency)
		}
	}
}

// appAccount is the account of deploy/nats that holds jetfleet's user:
// the last account block opened before the user's line.
func appAccount(t *testing.T) string {
	conf := readFile(t, "nats/n1.conf")
	user := strings.Index(conf, "{ user: jetfleet,")
	blocks := regexp.MustCompile(`\n  (\w+) \{`).FindAllStringSubmatchIndex(conf[:max(user, 0)], -1)
	if user < 0 || len(blocks) == 0 {
		t.Fatal("nats/n1.conf: no account holds the user jetfleet")
	}
	last := blocks[len(blocks)-1]
	return conf[last[2]:last[3]]
}

// monitorPort is the monitoring port of the NATS chart's values.
func monitorPort(t *testing.T) string {
	m := regexp.MustCompile(`monitor:\n\s+enabled: true\n\s+port: (\d+)`).FindStringSubmatch(readFile(t, "k8s/nats-values.yaml"))
	if m == nil {
		t.Fatal("k8s/nats-values.yaml: no monitor port")
	}
	return m[1]
}
