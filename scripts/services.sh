#!/usr/bin/env bash
# services.sh up|down|status|backup — the dev/test services of MueJam Edge, all under .run/:
#   PostgreSQL primary    127.0.0.1:55432         (.run/pg/primary)
#   PostgreSQL replica    127.0.0.1:55433         (.run/pg/replica, pg_basebackup -R, streaming)
#   pgBackRest repository .run/pg/backup          (stanza muejam: the primary's WAL archive,
#                                                  archive_timeout 60s, and its full backups;
#                                                  config .run/pg/pgbackrest.conf)
#   Valkey/Redis          127.0.0.1:56379         (.run/valkey)
#   Valkey/Redis Cluster  127.0.0.1:47001-47006   (.run/valkey-cluster/<port>, 3 primaries +
#                                                  3 replicas, cluster bus on port+10000)
# "up" installs missing Debian packages, creates what is missing, reuses what exists (and
# restarts cluster nodes that died, which rejoin), waits until every service answers, checks
# that the replica is streaming and that every cluster node says cluster_state:ok, and takes
# a full backup when the repository has none. "backup" takes a full backup now (make backup);
# each one expires those before the previous one, with the WAL only they needed. "down"
# stops exactly these processes. Postgres runs as an unprivileged user (postgres, or the
# caller if not root).
#
# The ports can be moved, for a second stack beside the dev one (the tests do that):
# MUEJAM_PG_PRIMARY_PORT, MUEJAM_PG_REPLICA_PORT, MUEJAM_VALKEY_PORT and
# MUEJAM_VALKEY_CLUSTER_PORT (the first of six consecutive ports; each node's bus port is its
# port + 10000, so at most 55530). The Postgres ports are written into the clusters when they
# are created: change them on a fresh .run/ only.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd -P)
run_dir=$(readlink -m "${MUEJAM_RUN_DIR:-$repo/.run}") # absolute: the servers chdir
pg_primary_port=${MUEJAM_PG_PRIMARY_PORT:-55432}
pg_replica_port=${MUEJAM_PG_REPLICA_PORT:-55433}
valkey_port=${MUEJAM_VALKEY_PORT:-56379}
cluster_port=${MUEJAM_VALKEY_CLUSTER_PORT:-47001}
cluster_nodes=6
pg_db=muejam
pg_user=postgres
stanza=muejam
archive_timeout=60s # RPO 5 min: a quiet primary still ships its WAL every minute

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
		die "need root to run: $* (install it yourself, then run again)"
	fi
}

apt_updated=
apt_install() {
	log "installing Debian packages: $*"
	if [ -z "$apt_updated" ]; then as_root apt-get update -qq >&2; apt_updated=1; fi
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# pg_bin prints the bin directory of the newest installed PostgreSQL server.
pg_bin() {
	local d
	d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
	if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
		apt_install postgresql postgresql-contrib
		d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
	fi
	printf '%s\n' "$d"
}

# valkey_bin prints the server binary: valkey-server if installed, else redis-server.
valkey_bin() {
	local b
	b=$(command -v valkey-server || command -v redis-server || true)
	if [ -z "$b" ]; then
		apt_install valkey-server 2>/dev/null || apt_install redis-server
		b=$(command -v valkey-server || command -v redis-server)
	fi
	printf '%s\n' "$b"
}

cli_bin() { command -v valkey-cli || command -v redis-cli; }

# pgbackrest_bin installs pgBackRest when it is missing (archive_command runs it by name).
pgbackrest_bin() {
	command -v pgbackrest >/dev/null || apt_install pgbackrest
	command -v pgbackrest
}

# live_pid PIDFILE prints the pid in PIDFILE if that process runs and is a Valkey/Redis server
# (not another process that got the pid of one that died).
live_pid() {
	local pid comm
	[ -f "$1" ] || return 1
	pid=$(cat "$1")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
	case $comm in valkey* | redis*) printf '%s\n' "$pid" ;; *) return 1 ;; esac
}

os_user() {
	if [ "$(id -u)" != 0 ]; then id -un; return; fi
	id postgres >/dev/null 2>&1 || as_root useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
	printf 'postgres\n'
}

# as_pg runs a command as the unprivileged user, from / : runuser keeps the working directory,
# which may be a checkout that user cannot enter (initdb and pg_ctl then fail with "could not
# change directory").
as_pg() {
	if [ "$(id -u)" = 0 ]; then (cd / && exec runuser -u "$(os_user)" -- "$@"); else "$@"; fi
}

# pg_dir prints the real directory where the clusters live, every symlink resolved, since the
# unprivileged user must not go through the checkout: .run/pg, or, when that user cannot reach
# the checkout (a home directory or a mktemp -d directory without the x bit for others), a
# directory in /var/tmp linked from .run/pg. With "existing" it creates nothing and prints
# nothing when there are no clusters.
pg_dir() {
	local d=$run_dir/pg alt
	alt=/var/tmp/muejam-edge-$(printf '%s' "$repo" | sha256sum | cut -c1-12)
	if [ "${1:-}" = existing ]; then
		if [ -L "$d" ] || [ -d "$d" ]; then readlink -m "$d"; fi
		return 0
	fi
	mkdir -p "$run_dir"
	if [ ! -L "$d" ] && [ ! -d "$d" ]; then
		if as_pg test -x "$run_dir" 2>/dev/null && as_pg test -r "$run_dir" 2>/dev/null; then
			mkdir -p "$d"
		else
			ln -s "$alt" "$d"
		fi
	fi
	local real
	real=$(readlink -m "$d")
	if [ -L "$d" ]; then
		mkdir -p "$real" # /var/tmp may have been cleaned since the link was made
		log "$(os_user) cannot reach $run_dir; clusters live in $real (linked from $d)"
	fi
	if [ "$(id -u)" = 0 ]; then chown "$(os_user)" "$real"; fi
	if ! as_pg test -w "$real" 2>/dev/null || ! as_pg test -x "$real" 2>/dev/null; then
		die "$(os_user) cannot write to $real (remove $d and run again to use $alt)"
	fi
	printf '%s\n' "$real"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

psql_at() { # psql_at PORT SQL...
	local port=$1; shift
	"$bin/psql" -X -q -A -t -h 127.0.0.1 -p "$port" -U "$pg_user" -d postgres -v ON_ERROR_STOP=1 "$@"
}

wait_pg() { # wait_pg PORT NAME
	local i
	for i in $(seq 1 60); do
		"$bin/pg_isready" -q -h 127.0.0.1 -p "$1" && return 0
		sleep 0.5
	done
	die "$2 on 127.0.0.1:$1 did not answer within 30s (log: $pgd/$2.log)"
}

pg_running() { as_pg "$bin/pg_ctl" -D "$1" status >/dev/null 2>&1; }

start_pg() { # start_pg DATADIR PORT NAME
	if pg_running "$1"; then
		log "$3 already running on :$2"
	else
		if port_open "$2"; then die "port $2 is taken by another process; $3 cannot start"; fi
		as_pg "$bin/pg_ctl" -D "$1" -l "$pgd/$3.log" -w -t 60 start >/dev/null || die "$3 failed to start (log: $pgd/$3.log)"
		log "$3 started on :$2"
	fi
	wait_pg "$2" "$3"
}

up_primary() {
	local data=$pgd/primary
	if [ ! -f "$data/PG_VERSION" ]; then
		log "creating primary cluster in $data"
		as_pg "$bin/initdb" -D "$data" -U "$pg_user" --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
		cat >>"$data/postgresql.conf" <<CONF

# MueJam Edge dev/test primary (scripts/services.sh)
port = $pg_primary_port
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
wal_level = replica
max_wal_senders = 10
max_replication_slots = 10
hot_standby = on
hot_standby_feedback = on
# durability off: a dev/test cluster that can be recreated; never use these settings in production
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
	fi
	if ! grep -q '^archive_mode' "$data/postgresql.conf"; then
		as_pg tee -a "$data/postgresql.conf" >/dev/null <<CONF

# Continuous archiving to the pgBackRest repository $pgd/backup (scripts/services.sh)
archive_mode = on
archive_command = 'pgbackrest --config=$pgd/pgbackrest.conf --stanza=$stanza archive-push %p'
archive_timeout = $archive_timeout
CONF
	fi
	start_pg "$data" "$pg_primary_port" primary
	# A primary restored from the archive (docs/runbooks/disaster-recovery.md) replays the
	# WAL, then promotes itself: wait until it takes writes.
	local i
	for i in $(seq 1 600); do
		[ "$(psql_at "$pg_primary_port" -c 'select pg_is_in_recovery()')" = f ] && break
		[ "$i" = 600 ] && die "the primary on :$pg_primary_port is still in recovery after 5 min (log: $pgd/primary.log)"
		sleep 0.5
	done
	if [ "$(psql_at "$pg_primary_port" -c "select count(*) from pg_database where datname = '$pg_db'")" = 0 ]; then
		psql_at "$pg_primary_port" -c "create database $pg_db"
		log "created database $pg_db"
	fi
}

up_replica() {
	local data=$pgd/replica
	if [ ! -f "$data/PG_VERSION" ]; then
		log "creating replica in $data with pg_basebackup -R"
		as_pg mkdir -p -m 700 "$data"
		if [ "$(psql_at "$pg_primary_port" -c "select count(*) from pg_replication_slots where slot_name = 'muejam_replica'")" != 0 ]; then
			psql_at "$pg_primary_port" -c "select pg_drop_replication_slot('muejam_replica')" >/dev/null
		fi
		as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$pg_primary_port" -U "$pg_user" -D "$data" \
			-R -X stream -C -S muejam_replica -c fast
		printf '\n# MueJam Edge dev/test replica\nport = %s\n' "$pg_replica_port" | as_pg tee -a "$data/postgresql.conf" >/dev/null
	fi
	start_pg "$data" "$pg_replica_port" replica
	local i state=
	for i in $(seq 1 60); do
		state=$(psql_at "$pg_primary_port" -c "select state from pg_stat_replication where application_name <> 'pg_basebackup' and state = 'streaming' limit 1")
		[ "$state" = streaming ] && break
		sleep 0.5
	done
	[ "$state" = streaming ] || die "replica is not streaming from the primary (pg_stat_replication; log: $pgd/replica.log)"
	[ "$(psql_at "$pg_replica_port" -c 'select pg_is_in_recovery()')" = t ] || die "replica on :$pg_replica_port is not in recovery"
	log "replica streaming from primary"
}

# pgbr runs pgBackRest as the unprivileged user with the dev configuration; the primary has
# no Unix socket, so libpq's PGHOST takes pgBackRest to it over TCP.
pgbr() {
	as_pg env PGHOST=127.0.0.1 "$pgbackrest" --config="$pgd/pgbackrest.conf" --stanza="$stanza" "$@"
}

# up_archive writes the pgBackRest configuration, creates the stanza and takes the first full
# backup (setting backed_up). A primary created before archiving was configured starts
# archiving at its next restart (down, then up): until then it is left alone, other tests
# may be using it, and archiving stays empty.
archiving=
backed_up=
up_archive() {
	pgbackrest=$(pgbackrest_bin)
	as_pg mkdir -p "$pgd/pgbackrest-log"
	as_pg tee "$pgd/pgbackrest.conf" >/dev/null <<CONF
# Written by scripts/services.sh: the dev/test primary's WAL archive and backups.
[global]
repo1-path=$pgd/backup
repo1-retention-full=2
lock-path=$pgd/pgbackrest-lock
log-path=$pgd/pgbackrest-log
log-level-console=warn
log-level-file=info
start-fast=y
compress-type=lz4

[$stanza]
pg1-path=$pgd/primary
pg1-port=$pg_primary_port
CONF
	if [ "$(psql_at "$pg_primary_port" -c 'show archive_mode')" != on ]; then
		log "warning: the primary does not archive its WAL yet; it will after a restart: $0 down && $0 up"
		return 0
	fi
	archiving=1
	pgbr stanza-create >/dev/null || die "pgbackrest stanza-create failed (log: $pgd/pgbackrest-log)"
	if pgbr info --output=json | grep -q '"backup":\[\]'; then
		backup
		backed_up=1
	fi
	log "primary archived to $pgd/backup (pgBackRest stanza $stanza, archive_timeout $archive_timeout)"
}

# backup takes a full backup of the primary and checks that WAL archiving works.
backup() {
	log "taking a full backup of the primary (pgBackRest stanza $stanza)"
	pgbr backup --type=full || die "pgbackrest backup failed (log: $pgd/pgbackrest-log)"
	pgbr check || die "pgbackrest check failed: the WAL archive does not work (log: $pgd/pgbackrest-log, $pgd/primary.log)"
	pgbr info | sed -n 's/^ *full backup: /services: newest full backup: /p' | tail -n 1 >&2
}

up_valkey() {
	local dir=$run_dir/valkey server cli
	server=$(valkey_bin)
	cli=$(cli_bin)
	mkdir -p "$dir"
	if live_pid "$dir/valkey.pid" >/dev/null; then
		log "valkey already running on :$valkey_port"
	else
		if port_open "$valkey_port"; then die "port $valkey_port is taken by another process; valkey cannot start"; fi
		"$server" --port "$valkey_port" --bind 127.0.0.1 --daemonize yes --dir "$dir" \
			--pidfile "$dir/valkey.pid" --logfile "$dir/valkey.log" --save "" --appendonly no >/dev/null
		log "valkey started on :$valkey_port ($(basename "$server"))"
	fi
	local i
	for i in $(seq 1 60); do
		[ "$("$cli" -h 127.0.0.1 -p "$valkey_port" ping 2>/dev/null)" = PONG ] && return 0
		sleep 0.5
	done
	die "valkey on :$valkey_port did not answer PING within 30s (log: $dir/valkey.log)"
}

cluster_ports() { seq "$cluster_port" $((cluster_port + cluster_nodes - 1)); }

cluster_dir=$run_dir/valkey-cluster

# cluster_field PORT FIELD prints one field of CLUSTER INFO from the node on PORT (empty when
# it does not answer).
cluster_field() {
	"$cli" -h 127.0.0.1 -p "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p" || true
}

# start_cluster_node SERVER PORT DIR starts one cluster node. Its ports are in the kernel's
# ephemeral range, so a client's outgoing connection may hold one (port_open sees only
# listeners), and once closed keep it in TIME_WAIT for up to a minute: a node that could not
# bind is started again, a second apart, for up to 70 s.
start_cluster_node() {
	local server=$1 port=$2 dir=$3 try i seen
	for try in $(seq 1 70); do
		seen=0
		if [ -f "$dir/node.log" ]; then seen=$(wc -l <"$dir/node.log"); fi
		"$server" --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$dir" \
			--pidfile "$dir/node.pid" --logfile "$dir/node.log" --save "" --appendonly no \
			--cluster-enabled yes --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 1000 \
			--cluster-require-full-coverage no --cluster-replica-validity-factor 0 >/dev/null
		for i in $(seq 1 20); do
			[ "$("$cli" -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && return 0
			tail -n +"$((seen + 1))" "$dir/node.log" 2>/dev/null | grep -q "Address already in use" && break
			sleep 0.1
		done
		tail -n +"$((seen + 1))" "$dir/node.log" 2>/dev/null | grep -q "Address already in use" || return 0
		if [ "$try" = 1 ]; then log "valkey cluster node :$port: a port is held by another socket (a client connection or its TIME_WAIT); retrying for up to 70s"; fi
		sleep 1
	done
	die "valkey cluster node :$port could not bind its ports (log: $dir/node.log)"
}

# up_valkey_cluster starts the nodes that do not run (those with a nodes.conf rejoin the
# cluster), creates the cluster when every node is new, and waits for cluster_state:ok on
# every node.
up_valkey_cluster() {
	local server port dir i last=$((cluster_port + cluster_nodes - 1))
	if [ "$cluster_port" -lt 1 ] || [ "$last" -gt 55535 ]; then
		die "MUEJAM_VALKEY_CLUSTER_PORT=$cluster_port: the nodes take $cluster_nodes ports from it, and their bus ports (port + 10000) must stay below 65536"
	fi
	server=$(valkey_bin)
	cli=$(cli_bin)
	for port in $(cluster_ports); do
		dir=$cluster_dir/$port
		mkdir -p "$dir"
		live_pid "$dir/node.pid" >/dev/null && continue
		for i in "$port" $((port + 10000)); do
			if port_open "$i"; then die "port $i is taken by another process; cluster node :$port cannot start"; fi
		done
		if [ -f "$dir/nodes.conf" ]; then log "restarting valkey cluster node :$port (it rejoins)"; fi
		start_cluster_node "$server" "$port" "$dir"
	done
	for port in $(cluster_ports); do
		for i in $(seq 1 100); do
			[ "$("$cli" -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = PONG ] && break
			[ "$i" = 100 ] && die "valkey cluster node :$port did not answer PING within 20s (log: $cluster_dir/$port/node.log)"
			sleep 0.2
		done
	done

	local formed='' new=() addrs=() n
	for port in $(cluster_ports); do
		addrs+=("127.0.0.1:$port")
		n=$(cluster_field "$port" cluster_slots_assigned)
		if [ "$n" = 16384 ]; then formed=$port; fi
		if [ "$n" = 0 ] && [ "$(cluster_field "$port" cluster_known_nodes)" = 1 ]; then new+=("$port"); fi
	done
	if [ "${#new[@]}" = "$cluster_nodes" ]; then
		log "creating the valkey cluster on :$cluster_port-$last (3 primaries, 3 replicas)"
		"$cli" --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$cluster_dir/create.log" 2>&1 ||
			die "creating the cluster failed (output: $cluster_dir/create.log)"
	elif [ -n "$formed" ]; then
		for port in "${new[@]}"; do rejoin_node "$port" "$formed"; done
	else
		die "the valkey cluster under $cluster_dir is half formed (its nodes neither new nor covering the 16384 slots): run $0 down, remove that directory and run $0 up"
	fi

	for i in $(seq 1 150); do
		n=0
		for port in $(cluster_ports); do
			[ "$(cluster_field "$port" cluster_state)" = ok ] && n=$((n + 1))
		done
		if [ "$n" = "$cluster_nodes" ]; then
			log "valkey cluster ok on :$cluster_port-$last ($(basename "$server"))"
			return 0
		fi
		sleep 0.2
	done
	die "the valkey cluster on :$cluster_port-$last is not cluster_state:ok on every node after 30s (logs: $cluster_dir/*/node.log)"
}

# rejoin_node PORT SEED adds a node that lost its nodes.conf back to the cluster, as a replica,
# and makes the other nodes forget the identity it had.
rejoin_node() {
	local id old p
	log "valkey cluster node :$1 lost its cluster state; adding it again as a replica"
	id=$("$cli" -h 127.0.0.1 -p "$1" cluster myid | tr -d '\r')
	# The old identity is listed with the address, or, once a node has reached the new one
	# there, with none (noaddr); forget it unless it still owns slots.
	old=$("$cli" -h 127.0.0.1 -p "$2" cluster nodes | tr -d '\r' |
		awk -v a="127.0.0.1:$1@" -v id="$id" '$1 != id && NF == 8 && (index($2, a) == 1 || $3 ~ /noaddr/) { print $1 }')
	"$cli" --cluster add-node "127.0.0.1:$1" "127.0.0.1:$2" --cluster-slave >>"$cluster_dir/create.log" 2>&1 ||
		die "adding :$1 to the cluster failed (output: $cluster_dir/create.log)"
	for old in $old; do
		for p in $(cluster_ports); do
			"$cli" -h 127.0.0.1 -p "$p" cluster forget "$old" >/dev/null 2>&1 || true
		done
	done
}

stop_pg() { # stop_pg DATADIR NAME
	if [ -f "$1/PG_VERSION" ] && pg_running "$1"; then
		as_pg "$bin/pg_ctl" -D "$1" -m fast -w stop >/dev/null
		log "$2 stopped"
	fi
}

# stop_servers NAME PIDFILE... stops the Valkey/Redis servers of these pidfiles, all at once
# (a cluster primary that still has its replica may wait for it to catch up before it exits).
stop_servers() {
	local name=$1 f pid pids=() i
	shift
	for f in "$@"; do
		if pid=$(live_pid "$f"); then
			kill "$pid"
			pids+=("$pid")
		fi
		rm -f "$f"
	done
	[ "${#pids[@]}" -gt 0 ] || return 0
	for i in $(seq 1 150); do
		kill -0 "${pids[@]}" 2>/dev/null || break
		sleep 0.1
	done
	for pid in "${pids[@]}"; do
		if kill -0 "$pid" 2>/dev/null; then log "$name: pid $pid ignored SIGTERM for 15s; killing it"; kill -KILL "$pid" 2>/dev/null || true; fi
	done
	log "$name stopped"
}

status() {
	local rc=0 port role state
	if [ -n "$pgd" ] && pg_running "$pgd/primary"; then log "primary: running on :$pg_primary_port"; else log "primary: stopped"; rc=1; fi
	if [ -n "$pgd" ] && pg_running "$pgd/replica"; then log "replica: running on :$pg_replica_port"; else log "replica: stopped"; rc=1; fi
	if live_pid "$run_dir/valkey/valkey.pid" >/dev/null; then
		log "valkey: running on :$valkey_port"
	else
		log "valkey: stopped"; rc=1
	fi
	cli=$(cli_bin || true)
	for port in $(cluster_ports); do
		if live_pid "$cluster_dir/$port/node.pid" >/dev/null && [ -n "$cli" ]; then
			role=$("$cli" -h 127.0.0.1 -p "$port" role 2>/dev/null | head -n 1 | tr -d '\r')
			state=$(cluster_field "$port" cluster_state)
			log "valkey cluster node :$port: running, ${role:-?}, cluster_state:${state:-?}"
			[ "$state" = ok ] || rc=1
		else
			log "valkey cluster node :$port: stopped"; rc=1
		fi
	done
	return $rc
}

cmd=${1:-}
case "$cmd" in
up)
	bin=$(pg_bin)
	pgd=$(pg_dir)
	up_primary
	up_archive
	up_replica
	up_valkey
	up_valkey_cluster
	;;
down)
	pgd=$(pg_dir existing)
	if [ -n "$pgd" ]; then
		bin=$(pg_bin)
		stop_pg "$pgd/replica" replica
		stop_pg "$pgd/primary" primary
	fi
	stop_servers valkey "$run_dir/valkey/valkey.pid"
	# Every node ever started here, whatever MUEJAM_VALKEY_CLUSTER_PORT was; nodes.conf stays,
	# so the next "up" brings the same cluster back.
	shopt -s nullglob
	stop_servers "valkey cluster" "$cluster_dir"/*/node.pid
	;;
backup)
	bin=$(pg_bin)
	pgd=$(pg_dir)
	up_primary
	up_archive
	[ -n "$archiving" ] || die "the primary does not archive its WAL yet: $0 down && $0 up first"
	[ -n "$backed_up" ] || backup
	;;
status)
	pgd=$(pg_dir existing)
	if [ -n "$pgd" ]; then bin=$(pg_bin); fi
	status
	;;
*)
	echo "usage: $0 up|down|status|backup" >&2
	exit 2
	;;
esac
