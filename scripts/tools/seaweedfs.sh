#!/usr/bin/env bash
# Builds the SeaweedFS `weed` pinned in sagaz_lakehouse/versions.py from the Go module proxy into $1 (weed-<module
# version>). The local e2e suite runs it as an operator's own object store (tests/external_store.py), the candidate
# bundled store of issue 26 (docs/object-store-seaweedfs.md). Idempotent. The build itself is
# sagaz_lakehouse.targets.local.distributions.build_seaweedfs (a wrapper module: upstream's go.mod has a replace).
set -euo pipefail
BIN="${1:?usage: seaweedfs.sh BIN_DIR}"
here="$(cd "$(dirname "$0")/../.." && pwd)"
VERSION="$(cd "$here" && python3 -c 'from sagaz_lakehouse import versions; print(versions.SEAWEEDFS.version)')"
[ -x "$BIN/weed-$VERSION" ] && exit 0
echo "building SeaweedFS $VERSION from the Go module proxy (one time) ..." >&2
cd "$here" && exec python3 -m sagaz_lakehouse.targets.local.distributions seaweedfs "$BIN"
