#!/usr/bin/env bash
# A private Docker Engine for the container tests: `docker-engine.sh start|stop|status`.
#
# Why a script and not the distribution's service: the test machines have no systemd and no image registry, and the
# tests must own everything they touch. So this script
#   - installs Debian's engine (docker.io, containerd, runc, iptables; debootstrap for the stand-in base image) when
#     missing, running `apt-get update` only when the packages are unknown to apt;
#   - starts dockerd by hand with its own config file, data root, pid file and log under the sagaz-lakehouse cache
#     ($SAGAZ_LAKEHOUSE_LOCAL__CACHE_DIR, default ~/.cache/sagaz-lakehouse), so images built once stay for the next
#     run and nothing is written to /etc/docker;
#   - pins the container networks to 10.213.0.0/16 (bridge 10.213.0.1/24) and the MTU to eth0's, so the engine never
#     picks a range that collides with the host's networks and packets fit the host's link;
#   - serves the default socket /var/run/docker.sock (so plain `docker` and `docker compose`, as the sagaz-lakehouse
#     compose driver calls them, reach it) but refuses to start when another daemon already serves it, and `stop`
#     ends only the daemon whose pid it recorded;
#   - installs the Compose v2 CLI plugin built by scripts/tools/compose.sh (Go module proxy) into the docker CLI's
#     plugin folder, as a link to the cached binary.
# `start` on a running engine is a no-op. Nothing here contacts anything but the apt mirror (install only).
set -euo pipefail

CACHE="${SAGAZ_LAKEHOUSE_LOCAL__CACHE_DIR:-$HOME/.cache/sagaz-lakehouse}"
ENGINE_DIR="$CACHE/docker"
DATA_ROOT="$ENGINE_DIR/data"
STATE="$ENGINE_DIR/run"
PIDFILE="$STATE/dockerd.pid"
LOG="$STATE/dockerd.log"
CONFIG="$STATE/daemon.json"
SOCKET=/var/run/docker.sock
PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
SUBNET_POOL="${SAGAZ_DOCKER_POOL:-10.213.0.0/16}"
BRIDGE_IP="${SAGAZ_DOCKER_BIP:-10.213.0.1/24}"
PACKAGES=(docker.io containerd runc iptables debootstrap)
here="$(cd "$(dirname "$0")" && pwd)"

log() { echo "docker-engine: $*" >&2; }

our_pid() {
  # The recorded pid, only if that process is still a dockerd (pids are reused).
  [ -f "$PIDFILE" ] || return 1
  local pid
  pid="$(cat "$PIDFILE")"
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = dockerd ] && echo "$pid"
}

answering() { docker -H "unix://$SOCKET" info >/dev/null 2>&1; }

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  log "installing ${missing[*]} (Debian packages)"
  # Only refresh the package lists when apt does not know a package yet (a fresh machine).
  for p in "${missing[@]}"; do
    if ! apt-cache show "$p" >/dev/null 2>&1; then apt-get update -q; break; fi
  done
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
}

write_config() {
  local mtu
  # Containers behind a bridge must not send frames bigger than the host's uplink carries.
  mtu="$(cat /sys/class/net/eth0/mtu 2>/dev/null || echo 1500)"
  mkdir -p "$STATE" "$DATA_ROOT"
  cat > "$CONFIG.tmp" <<EOF
{
  "bip": "$BRIDGE_IP",
  "default-address-pools": [{"base": "$SUBNET_POOL", "size": 24}],
  "mtu": $mtu,
  "data-root": "$DATA_ROOT",
  "pidfile": "$PIDFILE",
  "hosts": ["unix://$SOCKET"],
  "storage-driver": "overlay2",
  "log-driver": "json-file",
  "log-opts": {"max-size": "20m", "max-file": "2"}
}
EOF
  mv "$CONFIG.tmp" "$CONFIG"
}

install_compose_plugin() {
  bash "$here/tools/compose.sh" "$CACHE/bin"  # idempotent: builds once from the Go module proxy
  local target="$PLUGIN_DIR/docker-compose"
  if [ -e "$target" ] && [ "$(readlink -f "$target")" != "$(readlink -f "$CACHE/bin/docker-compose")" ]; then
    log "leaving the existing $target alone (not ours)"
    return 0
  fi
  mkdir -p "$PLUGIN_DIR"
  ln -sfn "$CACHE/bin/docker-compose" "$target"
}

start() {
  local pid started=$SECONDS
  if pid="$(our_pid)"; then
    log "already running (pid $pid, data root $DATA_ROOT)"
    install_compose_plugin
  else
    if command -v docker >/dev/null && answering; then
      log "another Docker daemon serves $SOCKET; not starting a second one (stop it, or use that one)"
      return 1
    fi
    install_packages
    install_compose_plugin
    write_config
    rm -f "$PIDFILE"
    log "starting dockerd (config $CONFIG, log $LOG)"
    # setsid: the daemon must outlive this script and the shell that called it.
    setsid dockerd --config-file "$CONFIG" >>"$LOG" 2>&1 < /dev/null &
    pid=$!
  fi
  until answering; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "dockerd exited; last lines of $LOG:"; tail -n 20 "$LOG" >&2; return 1
    fi
    if [ $((SECONDS - started)) -ge 60 ]; then
      log "dockerd did not answer within 60 s; last lines of $LOG:"; tail -n 20 "$LOG" >&2; return 1
    fi
    sleep 0.5
  done
  log "running (pid $pid, ready after $((SECONDS - started)) s, data root $DATA_ROOT)"
}

stop() {
  local pid
  if ! pid="$(our_pid)"; then
    log "not running (no live dockerd recorded in $PIDFILE)"
    return 0
  fi
  log "stopping dockerd (pid $pid)"
  kill -TERM "$pid"
  # dockerd stops its containers first (up to their stop timeout), then its containerd.
  for _ in $(seq 1 120); do
    kill -0 "$pid" 2>/dev/null || { log "stopped"; return 0; }
    sleep 0.5
  done
  log "dockerd (pid $pid) still running after 60 s; check $LOG"
  return 1
}

status() {
  local pid
  if pid="$(our_pid)" && answering; then
    echo "running: pid $pid, socket $SOCKET, data root $DATA_ROOT, $(docker info --format '{{.ServerVersion}}' 2>/dev/null)"
    return 0
  fi
  echo "stopped"
  return 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
