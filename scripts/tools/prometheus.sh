#!/usr/bin/env bash
# Builds cmd/prometheus and cmd/promtool of the Prometheus module pinned in sagaz_lakehouse/versions.py from the Go
# module proxy into $1, under the names the local target and the rule tests look for (<command>-<module version>).
# `sagaz-lakehouse up` would build them on first use too; this keeps the one-time build out of the tests' start-up.
set -euo pipefail
BIN="${1:?usage: prometheus.sh BIN_DIR}"
here="$(cd "$(dirname "$0")/../.." && pwd)"
VERSION="$(cd "$here" && python3 -c 'from sagaz_lakehouse import versions; print(versions.PROMETHEUS.version)')"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[ -x "$BIN/prometheus-$VERSION" ] && [ -x "$BIN/promtool-$VERSION" ] && exit 0
[ -x "$GO" ] || { echo "prometheus.sh: Go not found; install Go" >&2; exit 1; }
mkdir -p "$BIN"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "building Prometheus $VERSION (prometheus, promtool) from the Go module proxy (one time) ..." >&2
GOBIN="$work" GOFLAGS=-mod=mod "$GO" install "github.com/prometheus/prometheus/cmd/prometheus@$VERSION" \
  "github.com/prometheus/prometheus/cmd/promtool@$VERSION"
mv "$work/prometheus" "$BIN/prometheus-$VERSION"
mv "$work/promtool" "$BIN/promtool-$VERSION"
