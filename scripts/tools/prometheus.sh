#!/usr/bin/env bash
# Builds cmd/prometheus and cmd/promtool of the Prometheus module pinned in sagaz_lakehouse/versions.py from the Go
# module proxy into $1, under the names the local target and the rule tests look for (<command>-<module version>).
# `sagaz-lakehouse up` would build them on first use too; this keeps the one-time build out of the tests' start-up.
# The build itself is sagaz_lakehouse.targets.local.distributions.build_prometheus (one recipe for both); idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.." && exec nice -n 19 python3 -m sagaz_lakehouse.targets.local.distributions --if-missing prometheus "${1:?usage: prometheus.sh BIN_DIR}"
