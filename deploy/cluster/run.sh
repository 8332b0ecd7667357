#!/usr/bin/env bash
# The whole jetfleet topology on loopback, from two binaries and the
# shipped deploy/ files, deployed the way a team deploys its own service:
#   - jetfleet, for what is jetfleet's own: 3 `jetfleet nats` nodes
#     (deploy/nats, ports rewritten) and the one-off provisioning of the R3
#     streams and buckets (`jetfleet up --replicas 3`);
#   - the service's binary, built with package node (default: the catalog
#     demo from ./examples/catalog): its `migrate`, then 3 web nodes
#     (`catalog serve`) and 2 workers (`catalog work`);
# plus a MariaDB primary and replica (deploy/mariadb) and HAProxy with
# deploy/haproxy/haproxy.cfg. `task cluster` runs `run.sh up`;
# `task cluster:down` runs `run.sh down`.
#
# Usage: run.sh <command>
#   up              start everything, print the balancer URL, wait; Ctrl-C
#                   (or SIGTERM) stops everything; the state directory (logs)
#                   stays until the next up or down
#   start           start everything and return, leaving it running
#   stop            stop everything a previous start or up left running
#   down            stop, then delete the state directory
#   status          each process: pid and whether it runs
#   kill NAME [SIG] send a signal (default KILL) to one process
#   restart NAME    start one process again (after kill), same ports and data
#   names           the process names: nats1-3, db-primary, db-replica,
#                   web1-3, worker1-2, haproxy
#
# Fault-injection runs drive it with start, kill, restart and stop, and read
# $STATE/cluster.env (URLs, passwords, ports; `set -a; . cluster.env`).
#
# Settings (environment):
#   JETFLEET_CLUSTER_DIR    state: binaries, configs, data, logs, pids
#                           (default ./data/cluster in the repository)
#   JETFLEET_BIN            a jetfleet binary to use instead of building one
#                           (from ./cmd/jetfleet): nats and provisioning
#   JETFLEET_APP_BIN        the service's binary (a main calling node.Main)
#                           to use instead of building the catalog demo from
#                           ./examples/catalog: migrate, serve and work
#   JETFLEET_CLUSTER_WORKERS              worker processes (default 2)
#   JETFLEET_CLUSTER_NATS_PORTS           default "4232 4233 4234"
#   JETFLEET_CLUSTER_ROUTE_PORTS          default "6232 6233 6234"
#   JETFLEET_CLUSTER_NATS_MONITOR_PORTS   default "8232 8233 8234"
#   JETFLEET_CLUSTER_DB_PORTS             default "3316 3317" (primary, replica)
#   JETFLEET_CLUSTER_WEB_PORTS            default "8181 8182 8183"
#   JETFLEET_CLUSTER_AGENT_PORTS          default "9181 9182 9183"
#   JETFLEET_CLUSTER_LB_PORT              default 8180 (the balancer)
#   JETFLEET_CLUSTER_LB_STATS_PORT        default 8190 (HAProxy's stats page)
#   JETFLEET_CLUSTER_DRAIN_DELAY          serve --drain-delay (default 5s)
#   JETFLEET_CLUSTER_GRACE                serve and work --grace (default 30s)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEPLOY=$ROOT/deploy
STATE=${JETFLEET_CLUSTER_DIR:-$ROOT/data/cluster}
case $STATE in /*) ;; *) STATE=$PWD/$STATE ;; esac

read -r -a NATS_PORTS <<<"${JETFLEET_CLUSTER_NATS_PORTS:-4232 4233 4234}"
read -r -a ROUTE_PORTS <<<"${JETFLEET_CLUSTER_ROUTE_PORTS:-6232 6233 6234}"
read -r -a MON_PORTS <<<"${JETFLEET_CLUSTER_NATS_MONITOR_PORTS:-8232 8233 8234}"
read -r -a DB_PORTS <<<"${JETFLEET_CLUSTER_DB_PORTS:-3316 3317}"
read -r -a WEB_PORTS <<<"${JETFLEET_CLUSTER_WEB_PORTS:-8181 8182 8183}"
read -r -a AGENT_PORTS <<<"${JETFLEET_CLUSTER_AGENT_PORTS:-9181 9182 9183}"
LB_PORT=${JETFLEET_CLUSTER_LB_PORT:-8180}
LB_STATS_PORT=${JETFLEET_CLUSTER_LB_STATS_PORT:-8190}
WORKERS=${JETFLEET_CLUSTER_WORKERS:-2}
DRAIN_DELAY=${JETFLEET_CLUSTER_DRAIN_DELAY:-5s}
GRACE=${JETFLEET_CLUSTER_GRACE:-30s}
QUEUES=high,default,emails

log() { printf 'cluster: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# ---------------------------------------------------------------------------
# Processes: each has a launcher ($STATE/run/NAME.sh, which loads
# cluster.env and execs the command), a log and a pid file.

names() {
	local n
	echo nats1 nats2 nats3 db-primary db-replica web1 web2 web3
	for ((n = 1; n <= WORKERS; n++)); do echo "worker$n"; done
	echo haproxy
}

pid_of() {
	local f=$STATE/pids/$1.pid
	[ -s "$f" ] && cat "$f"
}

# ours PID: the process runs and was started for this state directory (its
# environment says so), so a pid reused by another program is never signalled.
ours() {
	local pid=$1 st
	[ -r "/proc/$pid/environ" ] || return 1
	st=$(ps -o stat= -p "$pid" 2>/dev/null) || return 1
	[[ $st != Z* ]] || return 1
	{ tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | grep -qxF "JETFLEET_CLUSTER_DIR=$STATE"
}

running() {
	local pid
	pid=$(pid_of "$1") && ours "$pid"
}

# write_launcher NAME CMD...: the script that starts NAME.
write_launcher() {
	local name=$1
	shift
	{
		echo '#!/usr/bin/env bash'
		echo "set -a; . $(printf '%q' "$STATE/cluster.env"); set +a"
		echo "cd $(printf '%q' "$STATE")"
		printf 'exec'
		printf ' %q' "$@"
		echo
	} >"$STATE/run/$name.sh"
	chmod +x "$STATE/run/$name.sh"
}

# start_proc NAME: run its launcher in a session of its own (so a Ctrl-C
# in the terminal reaches only this script, which stops things in order).
start_proc() {
	local name=$1
	if running "$name"; then
		log "$name already runs (pid $(pid_of "$name"))"
		return 0
	fi
	echo "=== $(date '+%F %T') start" >>"$STATE/logs/$name.log"
	setsid "$STATE/run/$name.sh" >>"$STATE/logs/$name.log" 2>&1 </dev/null &
	echo $! >"$STATE/pids/$name.pid"
	disown # its end is reported by watch, not by bash
}

# stop_procs SIGNAL TIMEOUT NAME...: signal them, wait for them to exit, and
# SIGKILL what is left after TIMEOUT seconds.
stop_procs() {
	local sig=$1 timeout=$2 name pid left deadline
	shift 2
	local pids=()
	for name in "$@"; do
		if pid=$(pid_of "$name") && ours "$pid"; then
			kill "-$sig" "$pid" 2>/dev/null || true
			pids+=("$name:$pid")
		fi
	done
	deadline=$((SECONDS + timeout))
	while :; do
		left=()
		for p in ${pids[@]+"${pids[@]}"}; do
			ours "${p#*:}" && left+=("$p")
		done
		[ ${#left[@]} -eq 0 ] && break
		if [ $SECONDS -ge $deadline ]; then
			for p in "${left[@]}"; do
				log "${p%%:*} (pid ${p#*:}) still runs ${timeout}s after SIG$sig: killing it"
				kill -KILL "${p#*:}" 2>/dev/null || true
			done
			break
		fi
		sleep 0.2
	done
	for name in "$@"; do rm -f "$STATE/pids/$name.pid"; done
}

stop_all() {
	[ -d "$STATE/pids" ] || return 0
	local workers=() n
	for ((n = 1; n <= WORKERS; n++)); do workers+=("worker$n"); done
	# Balancer first, then the web nodes (they drain) and the workers (they
	# finish their jobs), then what they depend on.
	stop_procs TERM 10 haproxy
	stop_procs TERM 60 web1 web2 web3 "${workers[@]}"
	stop_procs TERM 60 nats1 nats2 nats3
	stop_procs TERM 60 db-replica db-primary
	# Anything else a pid file names (a different JETFLEET_CLUSTER_WORKERS).
	local f
	for f in "$STATE"/pids/*.pid; do
		[ -e "$f" ] || continue
		stop_procs TERM 30 "$(basename "$f" .pid)"
	done
}

# last_log NAME: the end of a process's log, for error messages.
last_log() {
	log "--- last lines of $STATE/logs/$1.log ---"
	tail -n 20 "$STATE/logs/$1.log" >&2 || true
}

# wait_for WHAT TIMEOUT NAME CMD...: run CMD until it succeeds; fail when
# process NAME exits or TIMEOUT seconds pass.
wait_for() {
	local what=$1 timeout=$2 name=$3
	shift 3
	local deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		# Asked twice: /proc/<pid>/environ reads empty for a moment while
		# a launcher execs its program, and running would say it is gone.
		if [ -n "$name" ] && ! running "$name" && ! { sleep 0.5 && running "$name"; }; then
			last_log "$name"
			die "$name exited while waiting for $what"
		fi
		if [ $SECONDS -ge $deadline ]; then
			[ -n "$name" ] && last_log "$name"
			die "timed out after ${timeout}s waiting for $what"
		fi
		sleep 0.3
	done
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }

# ---------------------------------------------------------------------------
# Setup.

need() {
	local missing=() req cmd pkg
	for req in "$@"; do
		cmd=${req%%:*} pkg=${req#*:}
		command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("$cmd (Debian: $pkg)")
	done
	[ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]}"
}

random_secret() { head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

mariadbd_bin() { command -v mariadbd 2>/dev/null || echo /usr/sbin/mariadbd; }

check_ports_free() {
	local p busy=()
	for p in "${NATS_PORTS[@]}" "${ROUTE_PORTS[@]}" "${MON_PORTS[@]}" "${DB_PORTS[@]}" \
		"${WEB_PORTS[@]}" "${AGENT_PORTS[@]}" "$LB_PORT" "$LB_STATS_PORT"; do
		if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then busy+=("$p"); fi
	done
	[ ${#busy[@]} -eq 0 ] || die "ports already in use on 127.0.0.1: ${busy[*]} (another cluster? \`task cluster:down\`, or set JETFLEET_CLUSTER_*_PORTS)"
}

prepare() {
	need haproxy:haproxy mariadbd:mariadb-server mariadb-install-db:mariadb-server \
		mariadb:mariadb-client envsubst:gettext-base curl:curl setsid:util-linux
	if [ ${#NATS_PORTS[@]} -ne 3 ] || [ ${#ROUTE_PORTS[@]} -ne 3 ] || [ ${#MON_PORTS[@]} -ne 3 ] ||
		[ ${#WEB_PORTS[@]} -ne 3 ] || [ ${#AGENT_PORTS[@]} -ne 3 ] || [ ${#DB_PORTS[@]} -ne 2 ]; then
		die "JETFLEET_CLUSTER_*_PORTS: 3 ports each for NATS, routes, monitors, web and agents, 2 for the databases"
	fi
	if [ -d "$STATE/pids" ]; then
		local n
		for n in $(names); do
			running "$n" && die "a cluster is running from $STATE ($n, pid $(pid_of "$n")): \`task cluster:down\` (run.sh down) first"
		done
	fi
	check_ports_free
	rm -rf "$STATE"
	mkdir -p "$STATE"/{bin,run,logs,pids,nats,mariadb,jetfleet,haproxy}
	# MariaDB's unix socket path must fit in 107 bytes.
	[ ${#STATE} -le 60 ] || die "JETFLEET_CLUSTER_DIR $STATE is too long for MariaDB's socket path (60 characters at most)"

	BIN=$STATE/bin/jetfleet
	if [ -n "${JETFLEET_BIN:-}" ]; then
		[ -x "$JETFLEET_BIN" ] || die "JETFLEET_BIN=$JETFLEET_BIN is not an executable"
		cp "$JETFLEET_BIN" "$BIN"
	else
		need go:golang
		log "building jetfleet (./cmd/jetfleet)"
		(cd "$ROOT" && go build -o "$BIN" ./cmd/jetfleet)
	fi
	# The service's binary keeps its name (in ps, in the logs) in a directory
	# of its own, so one named jetfleet does not overwrite the other.
	mkdir -p "$STATE/bin/app"
	if [ -n "${JETFLEET_APP_BIN:-}" ]; then
		[ -x "$JETFLEET_APP_BIN" ] || die "JETFLEET_APP_BIN=$JETFLEET_APP_BIN is not an executable"
		APP_BIN=$STATE/bin/app/$(basename "$JETFLEET_APP_BIN")
		cp "$JETFLEET_APP_BIN" "$APP_BIN"
	else
		need go:golang
		APP_BIN=$STATE/bin/app/catalog
		log "building the service: the catalog demo (./examples/catalog)"
		(cd "$ROOT" && go build -o "$APP_BIN" ./examples/catalog)
	fi
	APP=$(basename "$APP_BIN")

	local nats_url="" i
	for i in 0 1 2; do nats_url+="${nats_url:+,}nats://127.0.0.1:${NATS_PORTS[$i]}"; done
	umask 077
	cat >"$STATE/cluster.env" <<-EOF
		# Written by deploy/cluster/run.sh; load with: set -a; . $STATE/cluster.env; set +a
		JETFLEET_CLUSTER_DIR=$STATE
		JETFLEET_DATA=$STATE/jetfleet
		NATS_URL=$nats_url
		NATS_USER=jetfleet
		NATS_PASSWORD=$(random_secret)
		NATS_SYS_USER=sys
		NATS_SYS_PASSWORD=$(random_secret)
		NATS_ROUTE_PASSWORD=$(random_secret)
		DB_CONNECTION=mysql
		DB_WRITE_HOST=127.0.0.1:${DB_PORTS[0]}
		DB_READ_HOST=127.0.0.1:${DB_PORTS[1]}
		DB_DATABASE=jetfleet
		DB_USERNAME=jetfleet
		DB_PASSWORD=$(random_secret)
		DB_REPL_PASSWORD=$(random_secret)
		DB_PRIMARY_SOCKET=$STATE/mariadb/primary/mariadbd.sock
		DB_REPLICA_SOCKET=$STATE/mariadb/replica/mariadbd.sock
		SESSION_REPLICAS=3
		JETFLEET_IMAGE_REPLICAS=3
		LOG_LEVEL=info
		LOG_FORMAT=json
		JETFLEET_LB_URL=http://127.0.0.1:$LB_PORT/
		JETFLEET_LB_STATS_URL=http://127.0.0.1:$LB_STATS_PORT/
		JETFLEET_LB_SOCKET=$STATE/haproxy/admin.sock
		JETFLEET_LB_BIND=127.0.0.1:$LB_PORT
		JETFLEET_LB_STATS_BIND=127.0.0.1:$LB_STATS_PORT
		JETFLEET_WEB_URLS=http://127.0.0.1:${WEB_PORTS[0]}/,http://127.0.0.1:${WEB_PORTS[1]}/,http://127.0.0.1:${WEB_PORTS[2]}/
		JETFLEET_NATS_MONITOR_URLS=http://127.0.0.1:${MON_PORTS[0]}/,http://127.0.0.1:${MON_PORTS[1]}/,http://127.0.0.1:${MON_PORTS[2]}/
		JETFLEET_DRAIN_DELAY=$DRAIN_DELAY
		JETFLEET_GRACE=$GRACE
		WEB1=127.0.0.1:${WEB_PORTS[0]}
		WEB2=127.0.0.1:${WEB_PORTS[1]}
		WEB3=127.0.0.1:${WEB_PORTS[2]}
		WEB1_AGENT_PORT=${AGENT_PORTS[0]}
		WEB2_AGENT_PORT=${AGENT_PORTS[1]}
		WEB3_AGENT_PORT=${AGENT_PORTS[2]}
	EOF
	umask 022
	NATS_ROUTE_PASSWORD=$(sed -n 's/^[[:space:]]*NATS_ROUTE_PASSWORD=//p' "$STATE/cluster.env")
	write_launchers
}

# render_nats N: deploy/nats/nN.conf with loopback ports. Every address it
# rewrites must be there exactly once, so a change to the shipped files that
# this script does not follow fails here instead of running something else.
render_nats() {
	local n=$1 i=$(($1 - 1)) src=$DEPLOY/nats/n$1.conf out=$STATE/nats/n$1.conf
	local pat
	for pat in 'listen: 0.0.0.0:4222' 'http: 127.0.0.1:8222' 'listen: 0.0.0.0:6222' \
		'@nats-1:6222' '@nats-2:6222' '@nats-3:6222' 'store_dir: /var/lib/jetfleet/nats'; do
		[ "$(grep -cF -- "$pat" "$src")" -eq 1 ] || die "$src: expected \"$pat\" exactly once"
	done
	# The route password: the shipped placeholder (4 places, besides the
	# comment that names it), which jetfleet nats refuses, becomes this
	# cluster's own.
	[ "$(grep -v '^#' "$src" | grep -cF 'route-secret-change-me')" -eq 4 ] || die "$src: expected the route password placeholder 4 times"
	[ -n "${NATS_ROUTE_PASSWORD:-}" ] || die "no NATS_ROUTE_PASSWORD (cluster.env)"
	sed -e "s|listen: 0.0.0.0:4222|listen: 127.0.0.1:${NATS_PORTS[$i]}|" \
		-e "/^[[:space:]]*#/!s|route-secret-change-me|${NATS_ROUTE_PASSWORD}|g" \
		-e "s|http: 127.0.0.1:8222|http: 127.0.0.1:${MON_PORTS[$i]}|" \
		-e "s|listen: 0.0.0.0:6222|listen: 127.0.0.1:${ROUTE_PORTS[$i]}|" \
		-e "s|@nats-1:6222|@127.0.0.1:${ROUTE_PORTS[0]}|" \
		-e "s|@nats-2:6222|@127.0.0.1:${ROUTE_PORTS[1]}|" \
		-e "s|@nats-3:6222|@127.0.0.1:${ROUTE_PORTS[2]}|" \
		-e "s|store_dir: /var/lib/jetfleet/nats|store_dir: \"$STATE/nats/n$n\"|" \
		"$src" >"$out"
}

mariadbd_args() {
	local role=$1 port=$2 dir=$STATE/mariadb/$1
	local args=(
		"$(mariadbd_bin)"
		"--defaults-file=$DEPLOY/mariadb/$role.cnf" # must come first
		"--datadir=$dir/data"
		"--port=$port"
		"--bind-address=127.0.0.1"
		"--socket=$dir/mariadbd.sock"
		"--pid-file=$dir/mariadbd.pid"
		"--log-error=$dir/error.log"
		# Small memory: six jetfleet processes share the machine.
		"--innodb-buffer-pool-size=64M"
		"--innodb-log-file-size=16M"
		"--performance-schema=OFF"
	)
	[ "$(id -u)" -eq 0 ] && args+=("--user=root")
	printf '%s\n' "${args[@]}"
}

write_launchers() {
	local n i args
	for n in 1 2 3; do
		render_nats "$n"
		write_launcher "nats$n" "$BIN" nats --config "$STATE/nats/n$n.conf"
	done
	mapfile -t args < <(mariadbd_args primary "${DB_PORTS[0]}")
	write_launcher db-primary "${args[@]}"
	mapfile -t args < <(mariadbd_args replica "${DB_PORTS[1]}")
	write_launcher db-replica "${args[@]}"
	for i in 0 1 2; do
		write_launcher "web$((i + 1))" "$APP_BIN" serve --listen "127.0.0.1:${WEB_PORTS[$i]}" \
			--agent-listen "127.0.0.1:${AGENT_PORTS[$i]}" --drain-delay "$DRAIN_DELAY" --grace "$GRACE" \
			--data "$STATE/jetfleet"
	done
	for ((n = 1; n <= WORKERS; n++)); do
		write_launcher "worker$n" "$APP_BIN" work --queue "$QUEUES" --tries 3 --concurrency 16 --grace "$GRACE"
	done
	write_launcher haproxy "$(command -v haproxy || echo /usr/sbin/haproxy)" -f "$DEPLOY/haproxy/haproxy.cfg"
}

# load_env: cluster.env into the environment (exported, so every command
# this script runs gets NATS_URL, DB_*, ...).
load_env() {
	[ -f "$STATE/cluster.env" ] || die "no cluster in $STATE (run.sh start first)"
	# Assigned by cluster.env:
	NATS_URL='' DB_WRITE_HOST='' DB_READ_HOST='' DB_PRIMARY_SOCKET='' DB_REPLICA_SOCKET=''
	DB_DATABASE='' DB_USERNAME='' DB_PASSWORD='' DB_REPL_PASSWORD='' NATS_ROUTE_PASSWORD=''
	JETFLEET_LB_URL='' JETFLEET_LB_STATS_URL='' JETFLEET_WEB_URLS=''
	set -a
	# shellcheck disable=SC1091
	. "$STATE/cluster.env"
	set +a
	BIN=$STATE/bin/jetfleet
}

sql() { # sql SOCKET: run standard input as root on the server of SOCKET
	mariadb --no-defaults -uroot --socket="$1" --batch --skip-column-names
}

start_mariadb() {
	log "MariaDB: installing the data directory"
	local out user=()
	[ "$(id -u)" -eq 0 ] && user=(--user=root)
	if ! out=$(mariadb-install-db --no-defaults --datadir="$STATE/mariadb/primary/data" ${user[@]+"${user[@]}"} \
		--auth-root-authentication-method=normal --skip-test-db \
		--innodb-buffer-pool-size=64M --innodb-log-file-size=16M 2>&1); then
		echo "$out" >&2
		die "mariadb-install-db failed"
	fi
	mkdir -p "$STATE/mariadb/replica"
	cp -a "$STATE/mariadb/primary/data" "$STATE/mariadb/replica/data"
	start_proc db-primary
	start_proc db-replica
	wait_for "the MariaDB primary" 60 db-primary sh -c "echo 'SELECT 1' | mariadb --no-defaults -uroot --socket='$DB_PRIMARY_SOCKET'"
	wait_for "the MariaDB replica" 60 db-replica sh -c "echo 'SELECT 1' | mariadb --no-defaults -uroot --socket='$DB_REPLICA_SOCKET'"

	log "MariaDB: deploy/mariadb/setup-primary.sql on the primary, setup-replication.sql on the replica"
	# envsubst gets the list of variables to fill in, so nothing else changes.
	# shellcheck disable=SC2016
	APP_DATABASE=$DB_DATABASE APP_USER=$DB_USERNAME APP_PASSWORD=$DB_PASSWORD APP_HOST=% \
		REPL_USER=repl REPL_PASSWORD=$DB_REPL_PASSWORD REPL_HOST=% \
		envsubst '${APP_DATABASE} ${APP_USER} ${APP_PASSWORD} ${APP_HOST} ${REPL_USER} ${REPL_PASSWORD} ${REPL_HOST}' \
		<"$DEPLOY/mariadb/setup-primary.sql" | sql "$DB_PRIMARY_SOCKET"
	# shellcheck disable=SC2016
	PRIMARY_HOST=127.0.0.1 PRIMARY_PORT=${DB_PORTS[0]} REPL_USER=repl REPL_PASSWORD=$DB_REPL_PASSWORD \
		envsubst '${PRIMARY_HOST} ${PRIMARY_PORT} ${REPL_USER} ${REPL_PASSWORD}' \
		<"$DEPLOY/mariadb/setup-replication.sql" | sql "$DB_REPLICA_SOCKET"
	sync_replica
}

# sync_replica: wait until the replica has applied all the primary logged.
sync_replica() {
	local pos res
	pos=$(echo 'SELECT @@gtid_binlog_pos' | sql "$DB_PRIMARY_SOCKET")
	res=$(echo "SELECT MASTER_GTID_WAIT('$pos', 30)" | sql "$DB_REPLICA_SOCKET")
	[ "$res" = 0 ] || {
		echo 'SHOW SLAVE STATUS\G' | mariadb --no-defaults -uroot --socket="$DB_REPLICA_SOCKET" >&2 || true
		die "the replica did not reach the primary's GTID position $pos"
	}
}

start_nats() {
	log "NATS: 3 nodes from deploy/nats (client ports ${NATS_PORTS[*]})"
	start_proc nats1
	start_proc nats2
	start_proc nats3
	local i
	for i in 0 1 2; do
		# /healthz is 200 once JetStream is up and the node is current with the
		# cluster's meta leader.
		wait_for "NATS node n$((i + 1)) (JetStream in the cluster)" 90 "nats$((i + 1))" \
			http_ok "http://127.0.0.1:${MON_PORTS[$i]}/healthz"
	done
}

# provision: the R3 topology. The service's `work` and `serve` create what
# is missing with 1 replica and never change what exists, so JOBS, DLQ, the
# session, image, paused-queue and worker buckets are created first, as R3,
# by `jetfleet up --replicas 3` against the cluster (it runs the catalog demo
# with its workers: they create the image bucket and the last two), which is
# stopped once it is up. It logs "job bus provisioned" only once every
# replica has caught up.
provision() {
	log "provisioning R3 streams and buckets: jetfleet up --replicas 3"
	local logf=$STATE/logs/provision.log
	(cd "$STATE" && exec "$BIN" up --replicas 3 --queues "$QUEUES" \
		--listen 127.0.0.1:0 --drain-delay 0 --data "$STATE/jetfleet" >"$logf" 2>&1) &
	local pid=$! deadline=$((SECONDS + 120))
	until grep -q 'jetfleet is up' "$logf" 2>/dev/null; do
		if ! kill -0 "$pid" 2>/dev/null; then
			tail -n 20 "$logf" >&2
			die "provisioning failed"
		fi
		if [ $SECONDS -ge $deadline ]; then
			kill "$pid" 2>/dev/null || true
			tail -n 20 "$logf" >&2
			die "provisioning took over 120s"
		fi
		sleep 0.3
	done
	kill -TERM "$pid" 2>/dev/null || true
	wait "$pid" || true
}

# on_start_exit: a start-up that failed stops what it had started.
on_start_exit() {
	local rc=$?
	if [ $rc -ne 0 ]; then
		log "start-up failed: stopping what started (logs: $STATE/logs)"
		stop_all
	fi
}

start_all() {
	prepare
	load_env
	trap on_start_exit EXIT
	start_nats
	start_mariadb
	log "$APP migrate"
	(cd "$STATE" && "$APP_BIN" migrate) >>"$STATE/logs/migrate.log" 2>&1 || {
		tail -n 20 "$STATE/logs/migrate.log" >&2
		die "$APP migrate failed"
	}
	sync_replica
	provision
	log "web nodes: 3 $APP serve (ports ${WEB_PORTS[*]}), workers: $WORKERS $APP work"
	local n i
	for n in 1 2 3; do start_proc "web$n"; done
	for ((n = 1; n <= WORKERS; n++)); do start_proc "worker$n"; done
	for i in 0 1 2; do
		wait_for "web$((i + 1)) /up" 60 "web$((i + 1))" http_ok "http://127.0.0.1:${WEB_PORTS[$i]}/up"
	done
	log "HAProxy: deploy/haproxy/haproxy.cfg on 127.0.0.1:$LB_PORT"
	start_proc haproxy
	wait_for "HAProxy: all 3 web nodes UP" 30 haproxy all_servers_up
	wait_for "the balancer's /up" 10 haproxy http_ok "$JETFLEET_LB_URL"up
	for ((n = 1; n <= WORKERS; n++)); do
		running "worker$n" || {
			last_log "worker$n"
			die "worker$n exited"
		}
	done
	trap - EXIT
}

all_servers_up() {
	local csv
	csv=$(curl -fsS --max-time 2 "${JETFLEET_LB_STATS_URL};csv") || return 1
	[ "$(printf '%s\n' "$csv" | awk -F, '$1 == "jetfleet_web" && $2 ~ /^web[123]$/ && $18 == "UP"' | wc -l)" -eq 3 ]
}

summary() {
	cat <<-EOF

		jetfleet cluster is up. Balancer (HAProxy): $JETFLEET_LB_URL

		  HAProxy stats   $JETFLEET_LB_STATS_URL
		  web nodes       ${JETFLEET_WEB_URLS//,/ } ($APP serve)
		  NATS            ${NATS_URL//,/ } (3-node JetStream, R3 streams)
		  MariaDB         primary $DB_WRITE_HOST, replica $DB_READ_HOST
		  workers         $WORKERS x $APP work --queue $QUEUES
		  state and logs  $STATE

		Use it from another shell (the passwords are in cluster.env):
		  set -a; . $STATE/cluster.env; set +a; $STATE/bin/jetfleet queue stats

	EOF
}

status_all() {
	local n pid
	for n in $(names); do
		if pid=$(pid_of "$n") && ours "$pid"; then
			printf '%-11s %-8s running\n' "$n" "$pid"
		else
			printf '%-11s %-8s stopped\n' "$n" "${pid:--}"
		fi
	done
}

# watch: until stopped, say when a process exits (or comes back).
watch() {
	local -A was=()
	local n
	for n in $(names); do was[$n]=1; done
	while :; do
		for n in $(names); do
			if running "$n"; then
				[ "${was[$n]}" = 1 ] || log "$n runs again (pid $(pid_of "$n"))"
				was[$n]=1
			else
				[ "${was[$n]}" = 0 ] || log "$n exited; \`run.sh restart $n\` starts it again"
				was[$n]=0
			fi
		done
		sleep 1 &
		wait $! || true
	done
}

on_signal() {
	# Stop everything even if the terminal or a pipe reading our output is
	# gone already (a Ctrl-C reaches every process of the foreground group).
	trap '' INT TERM PIPE
	set +e
	log "stopping: balancer, web nodes (they drain for $DRAIN_DELAY), workers, NATS, MariaDB"
	stop_all
	log "stopped; logs are in $STATE/logs (\`task cluster:down\` deletes them)"
	exit 0
}

cmd=${1:-up}
case $cmd in
up)
	start_all
	summary
	echo "Press Ctrl-C to stop everything."
	trap on_signal INT TERM
	watch
	;;
start)
	start_all
	summary
	;;
stop)
	[ -d "$STATE" ] || exit 0
	load_env
	stop_all
	;;
down)
	if [ -d "$STATE" ]; then
		[ -f "$STATE/cluster.env" ] && load_env
		stop_all
		rm -rf "$STATE"
		log "stopped and removed $STATE"
	else
		log "nothing to do: no $STATE"
	fi
	;;
status)
	[ -d "$STATE/pids" ] || die "no cluster in $STATE"
	status_all
	;;
names)
	names
	;;
kill)
	[ $# -ge 2 ] || die "usage: run.sh kill NAME [SIGNAL]"
	load_env
	if ! pid=$(pid_of "$2") || ! ours "$pid"; then die "$2 is not running"; fi
	kill "-${3:-KILL}" "$pid"
	;;
restart)
	[ $# -ge 2 ] || die "usage: run.sh restart NAME"
	load_env
	[ -x "$STATE/run/$2.sh" ] || die "no process named $2 (run.sh names)"
	start_proc "$2"
	;;
*)
	sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
	exit 2
	;;
esac
