#!/usr/bin/env bash
# Installs the binaries the tests need into $1 (a cache outside the clone). Idempotent.
set -euo pipefail
BIN="${1:?usage: install-tools.sh BIN_DIR}"
mkdir -p "$BIN"
