#!/usr/bin/env bash
# Our own entrypoint for the postgres stand-in. Follows docker-library/postgres docker-entrypoint.sh (15/bookworm,
# commit 6edb0a8c) for what sagaz-lakehouse uses: with `postgres` as the command and an empty $PGDATA, initdb with
# POSTGRES_USER as the superuser and POSTGRES_PASSWORD, or the file POSTGRES_PASSWORD_FILE names (from stdin, never
# an argument), `host all all all scram-sha-256` in pg_hba.conf (upstream's POSTGRES_HOST_AUTH_METHOD default),
# then POSTGRES_DB created through a temporary server listening on the Unix socket only; then exec the server.
# Differences: runs only as the user it is started as (no root branch, no gosu), no /docker-entrypoint-initdb.d
# scripts, no POSTGRES_INITDB_ARGS.
set -Eeuo pipefail

if [ "${1:-}" = postgres ] || [ "${1:0:1}" = - ]; then
	[ "${1:0:1}" = - ] && set -- postgres "$@"
	: "${POSTGRES_USER:=postgres}" "${POSTGRES_DB:=$POSTGRES_USER}"
	# upstream's file_env for the password: POSTGRES_PASSWORD_FILE names a file holding it (a secret file)
	if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
		if [ -n "${POSTGRES_PASSWORD:-}" ]; then
			echo >&2 "error: both POSTGRES_PASSWORD and POSTGRES_PASSWORD_FILE are set (but are exclusive)"
			exit 1
		fi
		POSTGRES_PASSWORD="$(< "$POSTGRES_PASSWORD_FILE")"
	fi
	unset POSTGRES_PASSWORD_FILE
	mkdir -p "$PGDATA"
	chmod 00700 "$PGDATA" || :
	if [ ! -s "$PGDATA/PG_VERSION" ]; then
		if [ -z "${POSTGRES_PASSWORD:-}" ]; then
			echo >&2 "error: the database is uninitialized and POSTGRES_PASSWORD is not set"
			exit 1
		fi
		initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") -D "$PGDATA"
		printf '\nhost all all all scram-sha-256\n' >> "$PGDATA/pg_hba.conf"
		pg_ctl -D "$PGDATA" -w start -o "-c listen_addresses='' -p 5432"
		if [ "$POSTGRES_DB" != postgres ]; then
			echo 'CREATE DATABASE :"db";' | psql -v ON_ERROR_STOP=1 --no-password --no-psqlrc \
				--username "$POSTGRES_USER" --dbname postgres -v db="$POSTGRES_DB"
		fi
		pg_ctl -D "$PGDATA" -m fast -w stop
		echo "PostgreSQL init process complete; ready for start up."
	fi
	unset POSTGRES_PASSWORD
fi
exec "$@"
