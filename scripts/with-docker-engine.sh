#!/usr/bin/env bash
# Runs a command with the private Docker Engine up and the stand-in images built:
#   scripts/with-docker-engine.sh COMMAND [ARG...]
# Starts the engine (scripts/docker-engine.sh) unless it is running already, builds the stand-in images that changed
# (scripts/build-images.py, with $PYTHON, which must have sagaz-lakehouse installed) and the images carrying the
# locked jars (`sagaz-lakehouse build-images --profile prod`), runs the command, and stops the
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
# The images carrying the locked jars (kubernetes.jars: baked), FROM those stand-ins: the real-node suite runs prod
# with them and uses a running engine read-only. Built from an empty folder: no settings file of anyone's applies.
scratch="$(mktemp -d)"
(cd "$scratch" && "$PYTHON" -m sagaz_lakehouse build-images --profile prod)
rm -rf "$scratch"
"$@"
