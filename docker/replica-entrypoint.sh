#!/usr/bin/env bash
# replica-entrypoint.sh — entrypoint of the postgres-replica service of docker-compose.yml. On
# the first start (no cluster in $PGDATA) it clones the primary with pg_basebackup -R, which also
# writes standby.signal and primary_conninfo; then it hands over to the image's entrypoint,
# which starts PostgreSQL as a hot standby streaming from the primary.
set -euo pipefail

primary=${PRIMARY_HOST:?PRIMARY_HOST is not set}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
	until pg_isready -q -h "$primary" -U postgres; do
		echo "replica-entrypoint: waiting for $primary" >&2
		sleep 1
	done
	install -d -m 0700 -o postgres -g postgres "$PGDATA"
	gosu postgres pg_basebackup -h "$primary" -U postgres -D "$PGDATA" -R -X stream -c fast
fi
exec docker-entrypoint.sh "$@"
