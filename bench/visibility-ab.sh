#!/bin/bash
# make bench-visibility: bench/visibility.py on two fresh local stacks of one run, in a scratch folder (default
# ports: nothing else may hold them): first with Fluss's default follower fetch wait (500ms), the baseline, then with
# the stack's default (durability.replica_fetch_wait). Writes bench/results/visibility.md; each stack is purged.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
OUT="${1:-$REPO/bench/results/visibility.md}"
WORK="$(mktemp -d /tmp/sagaz-visibility.XXXXXX)"
cli() { (cd "$WORK" && "$PYTHON" -m sagaz_lakehouse "$@"); }
cleanup() { cli down --purge >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
cli init >/dev/null
measure() {  # the stack up with the environment given, the tables, the benchmark; then purged
  env "$@" bash -c "cd '$WORK' && '$PYTHON' -m sagaz_lakehouse up && '$PYTHON' -m sagaz_lakehouse create-tables"
  env "$@" timeout 900 "$PYTHON" "$REPO/bench/visibility.py" --config "$WORK/sagaz-lakehouse.yaml" "${ARGS[@]}"
  cli down --purge >/dev/null
}
ARGS=(--save "$WORK/baseline.json" --out "$WORK/baseline.md")
measure SAGAZ_LAKEHOUSE_DURABILITY__REPLICA_FETCH_WAIT=500ms
ARGS=(--baseline "$WORK/baseline.json" --out "$OUT")
measure BENCH_STACK=default  # the stack's own settings
