#!/usr/bin/env bash
# PostgreSQL for the bundled catalog's database on the local target (prod): prints the server's bin folder,
# installing Debian's postgresql-<major> first when it is missing (debian-package.sh). The major version is the one
# sagaz_lakehouse/versions.py pins (POSTGRES_MAJOR), passed as $1 by the Makefile and the tests.
set -euo pipefail
major="${1:?usage: postgresql.sh MAJOR}"
postgres="$(bash "$(dirname "$0")/debian-package.sh" "postgresql-$major" "/usr/lib/postgresql/$major/bin/postgres")"
dirname "$postgres"
