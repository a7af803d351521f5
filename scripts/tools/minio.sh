#!/usr/bin/env bash
# Builds the MinIO server pinned in sagaz_lakehouse/versions.py from the Go module proxy into $1, under the name
# the local target looks for (minio-<module version>). `sagaz-lakehouse up` would build it on first use too; doing
# it here keeps that one-time step (about 4 minutes on 2 cores) out of the end-to-end test's start-up.
# The build itself is sagaz_lakehouse.targets.local.distributions.build_minio (one recipe for both); idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.." && exec python3 -m sagaz_lakehouse.targets.local.distributions --if-missing minio "${1:?usage: minio.sh BIN_DIR}"
