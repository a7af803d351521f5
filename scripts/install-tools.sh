#!/usr/bin/env bash
# Installs the binaries the tests need into $1 (a cache outside the clone), by running every
# scripts/tools/*.sh with that folder. Each tool script is idempotent and builds only what is missing.
set -euo pipefail
BIN="${1:?usage: install-tools.sh BIN_DIR}"
mkdir -p "$BIN"
here="$(cd "$(dirname "$0")" && pwd)"
for tool in "$here"/tools/*.sh; do
  [ -e "$tool" ] || continue
  bash "$tool" "$BIN"
done
