#!/usr/bin/env bash
# Builds Docker Compose v2 (the `docker-compose` standalone binary) from the Go module proxy into $1.
# The tests run its static commands (`config --quiet`) on every rendered compose variant; no engine is needed.
# Idempotent: does nothing when $1/docker-compose already reports the pinned version. The Go build cache and module
# cache are the defaults (GOCACHE, GOMODCACHE), so a rebuild after `rm` is quick.
# Recipe from docker/compose's Makefile: `go build -ldflags "-X ${PKG}/internal.Version=..." ./cmd`. Its go.mod has
# exclude directives, which `go install module/cmd@version` refuses, so the released module source is downloaded
# (`go mod download`, verified against the checksum database) and built as the main module in a scratch copy.
set -euo pipefail
BIN="${1:?usage: compose.sh BIN_DIR}"
VERSION="${COMPOSE_VERSION:-v2.40.3}"
MODULE="github.com/docker/compose/v2"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
target="$BIN/docker-compose"

if [ -x "$target" ] && "$target" version --short 2>/dev/null | grep -qx "${VERSION#v}"; then
  exit 0
fi
[ -x "$GO" ] || { echo "compose.sh: Go not found (looked for go on PATH and /usr/local/go/bin/go)" >&2; exit 1; }
mkdir -p "$BIN"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "building docker-compose $VERSION from $MODULE (Go module proxy) ..." >&2
src="$(cd "$work" && "$GO" mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -d "$src" ] || { echo "compose.sh: go mod download $MODULE@$VERSION gave no source folder" >&2; exit 1; }
cp -r "$src" "$work/src" && chmod -R u+w "$work/src"
(cd "$work/src" && CGO_ENABLED=0 "$GO" build -trimpath -ldflags "-w -s -X $MODULE/internal.Version=$VERSION" \
  -o "$work/docker-compose" ./cmd)
mv "$work/docker-compose" "$target"
"$target" version >&2
