#!/usr/bin/env bash
# Builds the MinIO server pinned in sagaz_lakehouse/versions.py from the Go module proxy into $1, under the name
# the local target looks for (minio-<module version>). `sagaz-lakehouse up` would build it on first use too; doing
# it here keeps that one-time step (about 4 minutes on 2 cores) out of the end-to-end test's start-up.
# The build itself is sagaz_lakehouse.targets.local.distributions.build_minio (one recipe for both).
set -euo pipefail
BIN="${1:?usage: minio.sh BIN_DIR}"
here="$(cd "$(dirname "$0")/../.." && pwd)"
VERSION="$(cd "$here" && python3 -c 'from sagaz_lakehouse import versions; print(versions.MINIO.version)')"
[ -x "$BIN/minio-$VERSION" ] && exit 0
echo "building MinIO $VERSION from the Go module proxy (one time) ..." >&2
cd "$here" && exec python3 -m sagaz_lakehouse.targets.local.distributions minio "$BIN"
