// Package deploy holds jetfleet's deployment files, not Go code: HAProxy
// and nginx in front of the web nodes, systemd units and a Supervisor
// program for the processes, a 3-node NATS JetStream cluster, MariaDB
// replication, a Dockerfile, a compose file and Kubernetes manifests, and
// deploy/cluster/run.sh, which starts the whole topology on loopback
// (`task cluster`). README.md says what each file is.
//
// The package's tests check every file that a tool can check with that
// tool: `haproxy -c` and a real HAProxy balancing real web nodes,
// `nginx -t` and a real nginx, the NATS configs started as a real cluster,
// `systemd-analyze verify` and `security`, Supervisor's own parser, and
// shellcheck. A test whose tool is missing skips and names the Debian
// package to install.
package deploy
