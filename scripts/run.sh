#!/usr/bin/env bash
# run.sh — `make run`: migrate, then run the app server and the edge in the foreground until
# Ctrl-C, which stops both. The services are already up (make services-up).
# VALKEY_CLUSTER=1 (VALKEY_CLUSTER=1 make run): both use the Valkey Cluster of services.sh
# instead of the standalone Valkey, given its first three nodes as seeds in VALKEY_ADDR
# (VALKEY_CLUSTER_ADDRS, comma-separated, overrides them).
set -euo pipefail
cd "$(dirname "$0")/.."

valkey="standalone ${VALKEY_ADDR:-127.0.0.1:56379}"
if [ "${VALKEY_CLUSTER:-}" = 1 ]; then
	p=${MUEJAM_VALKEY_CLUSTER_PORT:-47001}
	VALKEY_ADDR=${VALKEY_CLUSTER_ADDRS:-127.0.0.1:$p,127.0.0.1:$((p + 1)),127.0.0.1:$((p + 2))}
	export VALKEY_ADDR VALKEY_CLUSTER=1
	valkey="cluster, seeds $VALKEY_ADDR"
fi

bin/appserver migrate
bin/appserver &
app=$!
bin/caddy run --config caddyfiles/dev.Caddyfile --adapter caddyfile &
edge=$!

stop() {
	trap - INT TERM EXIT
	kill -TERM "$edge" "$app" 2>/dev/null || true
	wait "$edge" "$app" 2>/dev/null || true
}
trap stop INT TERM EXIT

for _ in $(seq 1 50); do
	curl -fsS -o /dev/null http://127.0.0.1:8080/v1/health 2>/dev/null && break
	sleep 0.2
done
cat >&2 <<MSG

  MueJam Edge is running. Ctrl-C stops the app server and the edge (make services-down stops the databases).
    edge        http://localhost:8080/v1/health
    edge admin  http://localhost:2019/edge/status   (metrics: http://localhost:9180/metrics)
    app server  http://localhost:8081/v1/health     (metrics: http://localhost:9081/metrics)
    valkey      $valkey

MSG
# Either process exiting ends the run.
wait -n "$app" "$edge"
