#!/usr/bin/env bash
# Builds CNCF Distribution's registry (the `registry` command) from the Go module proxy into $1, named with its
# version (registry-v3.1.2): the real registry the `build-images --push` test pushes to (tests/compose/engine).
# Version: sagaz_lakehouse/versions.py REGISTRY_TEST. Idempotent: builds only when missing. About 80 s cold, at the
# lowest CPU priority (the machine is shared).
set -euo pipefail
BIN="${1:?usage: registry.sh BIN_DIR}"
here="$(cd "$(dirname "$0")/../.." && pwd)"
VERSION="$(cd "$here" && python3 -c 'from sagaz_lakehouse import versions; print(versions.REGISTRY_TEST)')"
target="$BIN/registry-$VERSION"
[ -x "$target" ] && exit 0
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[ -x "$GO" ] || { echo "registry.sh: Go not found (looked for go on PATH and /usr/local/go/bin/go)" >&2; exit 1; }
mkdir -p "$BIN"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "building registry $VERSION from github.com/distribution/distribution/v3 (Go module proxy) ..." >&2
GOBIN="$work" CGO_ENABLED=0 nice -n 19 "$GO" install -trimpath -ldflags "-w -s" \
  "github.com/distribution/distribution/v3/cmd/registry@$VERSION"
mv "$work/registry" "$target"
"$target" --version >&2
