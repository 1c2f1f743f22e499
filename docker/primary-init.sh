#!/usr/bin/env bash
# primary-init.sh — run by the postgres image once, when the postgres-primary service of
# docker-compose.yml initializes its data directory: lets the replica connect for streaming
# replication from the compose network without a password. Trust authentication is acceptable
# only on a laptop stack whose published ports are bound to 127.0.0.1. The image sources this
# file when it is not executable, so it sets no shell options.
echo 'host replication all samenet trust' >>"$PGDATA/pg_hba.conf"
