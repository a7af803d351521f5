#!/usr/bin/env bash
# Builds the MinIO server pinned in sagaz_lakehouse/versions.py from the Go module proxy into $1, under the name
# the local target looks for (minio-<module version>). `sagaz-lakehouse up` would build it on first use too; doing
# it here keeps that one-time step (about 5 minutes on 2 cores) out of the end-to-end test's start-up.
set -euo pipefail
BIN="${1:?usage: minio.sh BIN_DIR}"
here="$(cd "$(dirname "$0")/../.." && pwd)"
VERSION="$(cd "$here" && python3 -c 'from sagaz_lakehouse import versions; print(versions.MINIO.version)')"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
target="$BIN/minio-$VERSION"
[ -x "$target" ] && exit 0
[ -x "$GO" ] || { echo "minio.sh: Go not found; install Go or put a minio binary on PATH" >&2; exit 1; }
mkdir -p "$BIN"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "building MinIO $VERSION from the Go module proxy (one time) ..." >&2
GOBIN="$work" GOFLAGS=-mod=mod "$GO" install "github.com/minio/minio@$VERSION"
mv "$work/minio" "$target"
