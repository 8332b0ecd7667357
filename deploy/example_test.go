package deploy_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// shipped is every deployment file and what checks it in this package's
// tests (or elsewhere). README.md lists the same.
var shipped = []struct{ path, checkedBy string }{
	{"Dockerfile", "its go build line, run by TestClusterScript (static binary); image not built"},
	{"cluster/run.sh", "shellcheck; run for real by TestClusterScript"},
	{"compose/docker-compose.yml", "docker compose config"},
	{"compose/example.env", "docker compose config"},
	{"compose/mariadb-grants.sql", "not run (no container engine)"},
	{"haproxy/haproxy.cfg", "haproxy -c; a real HAProxy in front of real nodes"},
	{"k8s/nats-values.yaml", "not run (no cluster); agreement with deploy/nats"},
	{"k8s/web.yaml", "not run (no cluster); agreement of probes and stop times"},
	{"k8s/worker.yaml", "not run (no cluster); agreement of stop times"},
	{"mariadb/README.md", "documentation"},
	{"mariadb/primary.cnf", "a real mariadbd (readmodel tests, TestClusterScript)"},
	{"mariadb/replica.cnf", "a real mariadbd (readmodel tests, TestClusterScript)"},
	{"mariadb/setup-primary.sql", "a real mariadbd (readmodel tests, TestClusterScript)"},
	{"mariadb/setup-replication.sql", "a real mariadbd (readmodel tests, TestClusterScript)"},
	{"nats/n1.conf", "nats-server's parser; a real 3-node cluster"},
	{"nats/n2.conf", "nats-server's parser; a real 3-node cluster"},
	{"nats/n3.conf", "nats-server's parser; a real 3-node cluster"},
	{"nginx/jetfleet.conf", "nginx -t; a real nginx in front of real nodes"},
	{"prometheus/alerts.yml", "promtool check rules"},
	{"prometheus/alerts_test.yml", "promtool test rules"},
	{"prometheus/prometheus.yml", "promtool check config"},
	{"supervisor/jetfleet-worker.conf", "Supervisor's own config parser"},
	{"systemd/jetfleet-nats@.service", "systemd-analyze verify and security"},
	{"systemd/jetfleet-web.service", "systemd-analyze verify and security"},
	{"systemd/jetfleet-worker@.service", "systemd-analyze verify and security"},
	{"systemd/jetfleet.env.example", "jetfleet's own settings parsers, and sh"},
}

// The deployment files and what checks each one.
func Example() {
	for _, f := range shipped {
		fmt.Printf("%-33s %s\n", f.path, f.checkedBy)
	}
	// Output:
	// Dockerfile                        its go build line, run by TestClusterScript (static binary); image not built
	// cluster/run.sh                    shellcheck; run for real by TestClusterScript
	// compose/docker-compose.yml        docker compose config
	// compose/example.env               docker compose config
	// compose/mariadb-grants.sql        not run (no container engine)
	// haproxy/haproxy.cfg               haproxy -c; a real HAProxy in front of real nodes
	// k8s/nats-values.yaml              not run (no cluster); agreement with deploy/nats
	// k8s/web.yaml                      not run (no cluster); agreement of probes and stop times
	// k8s/worker.yaml                   not run (no cluster); agreement of stop times
	// mariadb/README.md                 documentation
	// mariadb/primary.cnf               a real mariadbd (readmodel tests, TestClusterScript)
	// mariadb/replica.cnf               a real mariadbd (readmodel tests, TestClusterScript)
	// mariadb/setup-primary.sql         a real mariadbd (readmodel tests, TestClusterScript)
	// mariadb/setup-replication.sql     a real mariadbd (readmodel tests, TestClusterScript)
	// nats/n1.conf                      nats-server's parser; a real 3-node cluster
	// nats/n2.conf                      nats-server's parser; a real 3-node cluster
	// nats/n3.conf                      nats-server's parser; a real 3-node cluster
	// nginx/jetfleet.conf               nginx -t; a real nginx in front of real nodes
	// prometheus/alerts.yml             promtool check rules
	// prometheus/alerts_test.yml        promtool test rules
	// prometheus/prometheus.yml         promtool check config
	// supervisor/jetfleet-worker.conf   Supervisor's own config parser
	// systemd/jetfleet-nats@.service    systemd-analyze verify and security
	// systemd/jetfleet-web.service      systemd-analyze verify and security
	// systemd/jetfleet-worker@.service  systemd-analyze verify and security
	// systemd/jetfleet.env.example      jetfleet's own settings parsers, and sh
}

// Every file under deploy/ is in the table above and in README.md, and
// every file they name exists.
func TestEveryFileListed(t *testing.T) {
	var found []string
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if strings.HasSuffix(path, "_test.go") || path == "doc.go" || path == "README.md" {
			return nil
		}
		found = append(found, filepath.ToSlash(path))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	readme := readFile(t, "README.md")
	var listed []string
	for _, f := range shipped {
		listed = append(listed, f.path)
		if _, err := os.Stat(f.path); err != nil {
			t.Errorf("listed but missing: %v", err)
		}
		if !strings.Contains(readme, "`"+f.path+"`") {
			t.Errorf("README.md does not mention `%s`", f.path)
		}
	}
	for _, f := range found {
		if !slices.Contains(listed, f) {
			t.Errorf("%s is not in the table of shipped files (example_test.go) and README.md", f)
		}
	}
}
