#!/usr/bin/env bash
# Installs the manifest scanners the tests run on the rendered prod Kubernetes manifests into $1:
#   checkov (PyPI) in a virtualenv of its own beside $1 (its many pins must not meet the project's), wrapped as $1/checkov;
#   kube-score built from the Go module proxy (`go install .../cmd/kube-score@VERSION`).
# Idempotent: each is installed only when missing or at another version.
set -euo pipefail
BIN="${1:?usage: scanners.sh BIN_DIR}"
CHECKOV_VERSION="${CHECKOV_VERSION:-3.3.30}"
KUBE_SCORE_VERSION="${KUBE_SCORE_VERSION:-v1.20.0}"
PYTHON="${PYTHON:-python3}"
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
mkdir -p "$BIN"
venv="$(dirname "$BIN")/venvs/checkov-$CHECKOV_VERSION"

if ! "$BIN/checkov" --version 2>/dev/null | grep -qx "$CHECKOV_VERSION"; then
  echo "installing checkov $CHECKOV_VERSION (PyPI) into $venv ..." >&2
  "$PYTHON" -m venv "$venv"
  "$venv/bin/pip" install --disable-pip-version-check -q "checkov==$CHECKOV_VERSION"
  printf '#!/bin/sh\nexec "%s/bin/checkov" "$@"\n' "$venv" > "$BIN/checkov"
  chmod +x "$BIN/checkov"
fi

stamp="$BIN/.kube-score-version"
if [ ! -x "$BIN/kube-score" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$KUBE_SCORE_VERSION" ]; then
  [ -x "$GO" ] || { echo "scanners.sh: Go not found (looked for go on PATH and /usr/local/go/bin/go)" >&2; exit 1; }
  echo "building kube-score $KUBE_SCORE_VERSION (Go module proxy) ..." >&2
  GOBIN="$BIN" CGO_ENABLED=0 "$GO" install -trimpath "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION"
  echo "$KUBE_SCORE_VERSION" > "$stamp"
fi
