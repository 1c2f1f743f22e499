#!/usr/bin/env bash
# services.sh up|down|status — the dev/test services of MueJam Edge, all under .run/:
#   PostgreSQL primary   127.0.0.1:55432   (.run/pg/primary)
#   PostgreSQL replica   127.0.0.1:55433   (.run/pg/replica, pg_basebackup -R, streaming)
#   Valkey/Redis         127.0.0.1:56379   (.run/valkey)
# "up" installs missing Debian packages, creates what is missing, reuses what exists, waits
# until every service answers and checks that the replica is streaming. "down" stops exactly
# these processes. Postgres runs as an unprivileged user (postgres, or the caller if not root).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
run_dir=${MUEJAM_RUN_DIR:-$repo/.run}
pg_primary_port=55432
pg_replica_port=55433
valkey_port=56379
pg_db=muejam
pg_user=postgres

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
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
	if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
		apt_install postgresql postgresql-contrib
		d=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
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

os_user() {
	if [ "$(id -u)" != 0 ]; then id -un; return; fi
	id postgres >/dev/null 2>&1 || as_root useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
	printf 'postgres\n'
}

as_pg() {
	if [ "$(id -u)" = 0 ]; then runuser -u "$(os_user)" -- "$@"; else "$@"; fi
}

# pg_dir prints where the clusters live: .run/pg, or, when the unprivileged user cannot reach
# the checkout (a home directory without the x bit), a private directory in /var/tmp linked
# from .run/pg.
pg_dir() {
	local d=$run_dir/pg
	mkdir -p "$run_dir"
	if [ -L "$d" ] || [ -d "$d" ]; then printf '%s\n' "$d"; return; fi
	if as_pg test -x "$run_dir" 2>/dev/null && as_pg test -r "$run_dir" 2>/dev/null; then
		mkdir -p "$d"
	else
		local alt
		alt=/var/tmp/muejam-edge-$(printf '%s' "$repo" | sha256sum | cut -c1-12)
		mkdir -p "$alt"
		ln -s "$alt" "$d"
		log "$(os_user) cannot reach $run_dir; clusters live in $alt (linked from $d)"
	fi
	[ "$(id -u)" = 0 ] && chown "$(os_user)" "$d/"
	printf '%s\n' "$d"
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
	start_pg "$data" "$pg_primary_port" primary
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

up_valkey() {
	local dir=$run_dir/valkey server cli
	server=$(valkey_bin)
	cli=$(cli_bin)
	mkdir -p "$dir"
	if [ -f "$dir/valkey.pid" ] && kill -0 "$(cat "$dir/valkey.pid")" 2>/dev/null; then
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

stop_pg() { # stop_pg DATADIR NAME
	if [ -f "$1/PG_VERSION" ] && pg_running "$1"; then
		as_pg "$bin/pg_ctl" -D "$1" -m fast -w stop >/dev/null
		log "$2 stopped"
	fi
}

stop_valkey() {
	local pidfile=$run_dir/valkey/valkey.pid pid i
	[ -f "$pidfile" ] || return 0
	pid=$(cat "$pidfile")
	if kill -0 "$pid" 2>/dev/null; then
		kill "$pid"
		for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		log "valkey stopped"
	fi
	rm -f "$pidfile"
}

status() {
	local rc=0
	pg_running "$pgd/primary" && log "primary: running on :$pg_primary_port" || { log "primary: stopped"; rc=1; }
	pg_running "$pgd/replica" && log "replica: running on :$pg_replica_port" || { log "replica: stopped"; rc=1; }
	if [ -f "$run_dir/valkey/valkey.pid" ] && kill -0 "$(cat "$run_dir/valkey/valkey.pid")" 2>/dev/null; then
		log "valkey: running on :$valkey_port"
	else
		log "valkey: stopped"; rc=1
	fi
	return $rc
}

cmd=${1:-}
case "$cmd" in
up)
	bin=$(pg_bin)
	pgd=$(pg_dir)
	up_primary
	up_replica
	up_valkey
	;;
down)
	[ -e "$run_dir/pg" ] || [ -d "$run_dir/valkey" ] || exit 0
	bin=$(pg_bin)
	pgd=$(pg_dir)
	stop_pg "$pgd/replica" replica
	stop_pg "$pgd/primary" primary
	stop_valkey
	;;
status)
	bin=$(pg_bin)
	pgd=$(pg_dir)
	status
	;;
*)
	echo "usage: $0 up|down|status" >&2
	exit 2
	;;
esac
