#!/usr/bin/env bash
# Runs a command with the private Docker Engine up and the stand-in images built:
#   scripts/with-docker-engine.sh COMMAND [ARG...]
# Starts the engine (scripts/docker-engine.sh) unless it is running already, builds the stand-in images that changed
# (scripts/build-images.py, with $PYTHON, which must have sagaz-lakehouse installed), runs the command, and stops the
# engine afterwards, whatever the command's outcome, only if this script started it. Exits with the command's code.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-python3}"
started=0

finish() {
  local code=$?
  if [ "$started" = 1 ]; then
    bash "$here/docker-engine.sh" stop || echo "with-docker-engine: stopping the engine failed" >&2
  fi
  exit "$code"
}
trap finish EXIT

if ! bash "$here/docker-engine.sh" status >/dev/null; then
  started=1
fi
bash "$here/docker-engine.sh" start
"$PYTHON" "$here/build-images.py"
"$@"
