#!/usr/bin/env bash
# Headless Chromium for the report test: `chromium.sh` prints the path of a `chromium` binary, installing Debian's
# package first when it is missing (as docker-engine.sh does for the engine): `apt-get install
# --no-install-recommends chromium`, with `apt-get update` only when apt does not know the package yet (a fresh
# machine). Installing needs root; without it the script says what to run and fails. Nothing here contacts anything
# but the apt mirror, and only to install.
set -euo pipefail

log() { echo "chromium: $*" >&2; }

if found="$(command -v chromium)"; then
  echo "$found"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  log "not installed, and installing it needs root: run sudo apt-get install -y --no-install-recommends chromium"
  exit 1
fi
if ! apt-cache show chromium >/dev/null 2>&1; then apt-get update -q >&2; fi
log "installing Debian's chromium package"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >&2
command -v chromium
