#!/usr/bin/env bash
# Builds cmd/prometheus and cmd/promtool of the Prometheus module pinned in sagaz_lakehouse/versions.py from the Go
# module proxy into $1, under the names the local target and the rule tests look for (<command>-<module version>).
# `sagaz-lakehouse up` would build them on first use too; this keeps the one-time build out of the tests' start-up.
# The build itself is sagaz_lakehouse.targets.local.distributions.build_prometheus (one recipe for both).
set -euo pipefail
BIN="${1:?usage: prometheus.sh BIN_DIR}"
here="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$here" && exec nice -n 19 python3 - "$BIN" <<'PY'
import sys
from pathlib import Path

from sagaz_lakehouse import versions
from sagaz_lakehouse.targets.local import distributions

bin_dir = Path(sys.argv[1])
if all(distributions.prometheus_binary(bin_dir.parent, c).exists() for c in distributions.PROMETHEUS_COMMANDS):
    sys.exit(0)
print(f"building Prometheus {versions.PROMETHEUS.version} (prometheus, promtool) from the Go module proxy (one time) ...",
      file=sys.stderr)
distributions.build_prometheus(bin_dir)
PY
