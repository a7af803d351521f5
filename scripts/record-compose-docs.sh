#!/usr/bin/env bash
# Records the transcripts of docs/compose.md from one real run on the private Docker Engine:
#   make images   # the engine and the stand-in images, once
#   bash scripts/record-compose-docs.sh [OUTPUT]   # default: a transcript file under /tmp
# Every command of the walkthrough runs in a scratch folder, in the walkthrough's order, with the ports moved to
# 2xxxx (20000 + the default's last four digits) so the defaults stay free. Each command is written to OUTPUT as
# `$ command`, followed by its output and `[exit N]`; paste from there into the doc. The stack is purged at the end,
# also when a step fails.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-python3}"
OUT="${1:-$(mktemp /tmp/compose-docs.XXXXXX.txt)}"
WORK="$(mktemp -d /tmp/compose-docs.XXXXXX)"
ZOOKEEPER_STAND_IN_FOR_A_BROKEN_IMAGE="apache/iceberg-rest-fixture:1.10.1"  # runs, but never answers as ZooKeeper

sagaz() { "$PYTHON" -m sagaz_lakehouse "$@"; }

step() {  # step "shown command" command...: the command as a user types it, then what it printed and its exit code
  local shown="$1"; shift
  echo "\$ $shown" >>"$OUT"
  "$@" >>"$OUT" 2>&1
  echo "[exit $?]" >>"$OUT"
  echo >>"$OUT"
}

hold_port() {  # a listener on 127.0.0.1:$1 for the taken-port example; echoes its pid
  "$PYTHON" -c "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', $1)); s.listen(); time.sleep(600)" \
    </dev/null >/dev/null 2>&1 &  # not the caller's stdout: $(hold_port) would wait for it to close
  echo $!
}

finish() {
  (cd "$WORK" && sagaz down --purge >/dev/null 2>&1)
  echo "transcript: $OUT" >&2
}
trap finish EXIT

settings=()
while read -r name port; do
  settings+=(--set "ports.$name=$port")
done < <("$PYTHON" -c "
import dataclasses
from sagaz_lakehouse import config
for f in dataclasses.fields(config.Ports):
    print(f.name, 20000 + f.default % 10000)")
trino_port="$("$PYTHON" -c "from sagaz_lakehouse import config; print(20000 + config.Ports().trino % 10000)")"

cd "$WORK" || exit 1
: >"$OUT"
step "docker info --format '{{.ServerVersion}}'" docker info --format '{{.ServerVersion}}'
step "docker compose version" docker compose version
step "sagaz-lakehouse init --target compose ${settings[*]}" sagaz init --target compose "${settings[@]}"
step "grep -v '^ *#' sagaz-lakehouse.yaml" grep -v '^ *#' sagaz-lakehouse.yaml
step "sagaz-lakehouse render --target compose --out /tmp/lakehouse" sagaz render --target compose --out /tmp/lakehouse

holder="$(hold_port "$trino_port")"
sleep 1
step "sagaz-lakehouse up" sagaz up
kill "$holder"

step "sagaz-lakehouse up --set images.zookeeper=$ZOOKEEPER_STAND_IN_FOR_A_BROKEN_IMAGE" \
  sagaz up --set "images.zookeeper=$ZOOKEEPER_STAND_IN_FOR_A_BROKEN_IMAGE"
step "sagaz-lakehouse down" sagaz down

step "sagaz-lakehouse up" sagaz up
step "sagaz-lakehouse status" sagaz status
step "sagaz-lakehouse logs zookeeper --lines 3" sagaz logs zookeeper --lines 3
step "sagaz-lakehouse create-tables" sagaz create-tables
step "sagaz-lakehouse doctor" sagaz doctor
step "sagaz-lakehouse down" sagaz down
step "sagaz-lakehouse up" sagaz up
step "sagaz-lakehouse doctor --quick" sagaz doctor --quick
step "cd .sagaz-lakehouse/compose && docker compose ps --format 'table {{.Service}}\t{{.Status}}'" \
  bash -c "cd .sagaz-lakehouse/compose && docker compose ps --format 'table {{.Service}}\t{{.Status}}'"
step "sagaz-lakehouse down --purge" sagaz down --purge
step "docker volume ls" docker volume ls
