#!/usr/bin/env bash
# `debian-package.sh PACKAGE PROGRAM`: prints the path of PROGRAM (a name on PATH, or an absolute path), installing
# Debian's PACKAGE first when it is missing (as docker-engine.sh does for the engine): `apt-get install
# --no-install-recommends PACKAGE`, with `apt-get update` only when apt does not know the package yet (a fresh
# machine). Installing needs root; without it the script says what to run and fails. Nothing here contacts anything
# but the apt mirror, and only to install.
set -euo pipefail
package="${1:?usage: debian-package.sh PACKAGE PROGRAM}"
program="${2:?usage: debian-package.sh PACKAGE PROGRAM}"

log() { echo "$package: $*" >&2; }
find_program() {
  if [[ "$program" == /* ]]; then [ -x "$program" ] && echo "$program"; else command -v "$program"; fi
}

if find_program; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  log "not installed, and installing it needs root: run sudo apt-get install -y --no-install-recommends $package"
  exit 1
fi
if ! apt-cache show "$package" >/dev/null 2>&1; then apt-get update -q >&2; fi
log "installing Debian's $package package"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$package" >&2
find_program || { log "installed, but $program is still missing"; exit 1; }
