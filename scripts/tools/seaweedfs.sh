#!/usr/bin/env bash
# Builds the SeaweedFS `weed` pinned in sagaz_lakehouse/versions.py from the Go module proxy into $1 (weed-<module
# version>; about 4 minutes on 2 cores, once). The local e2e suite runs it as an operator's own object store
# (tests/external_store.py), the candidate bundled store of issue 26 (docs/object-store-seaweedfs.md). The build is
# sagaz_lakehouse.targets.local.distributions.build_seaweedfs (a wrapper module: upstream's go.mod has a replace).
set -euo pipefail
cd "$(dirname "$0")/../.." && exec python3 -m sagaz_lakehouse.targets.local.distributions --if-missing seaweedfs "${1:?usage: seaweedfs.sh BIN_DIR}"
