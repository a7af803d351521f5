#!/usr/bin/env bash
# Stand-in for ZooKeeper's bin/zkServer.sh (apache/zookeeper release-3.9.2), reduced to what a container uses:
#   start-foreground  run QuorumPeerMain on $ZOOCFG in the foreground (the image's default command);
#   status            ask the server with the `srvr` four-letter word (FourLetterWordMain, a short-lived JVM as
#                     upstream) and print its `Mode:` line; exit 1 when it does not answer. The client port comes
#                     from clientPort= or, as in the image's generated zoo.cfg, from the server.<myid>= line after
#                     ';' (an optional address before ':'), like upstream;
#   version           print the server version.
# The daemon verbs (start, stop, restart) are not provided: in a container the server runs in the foreground.
set -euo pipefail
# shellcheck source=zkEnv.sh
. "$(cd "$(dirname "$0")" && pwd)/zkEnv.sh"

# Reads key=value lines; the last occurrence wins, as in Java properties.
cfg_value() { sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$ZOOCFG" | tail -n 1; }

client_address() {
    local port address myid entry
    port="$(cfg_value clientPort)"
    address="$(cfg_value clientPortAddress)"
    if [ -z "$port" ]; then
        myid="$(cat "$(cfg_value dataDir)/myid" 2>/dev/null || true)"
        entry="$(cfg_value "server\\.$myid")"
        entry="${entry##*;}"  # "host:2888:3888;[address:]port" -> "[address:]port"
        port="${entry##*:}"
        [ "$entry" != "$port" ] && address="${entry%:*}"
    fi
    if [ -z "$port" ]; then
        echo "zkServer.sh: no client port in $ZOOCFG (clientPort or server.N=...;port)" >&2
        exit 1
    fi
    case "$address" in ""|0.0.0.0) address=localhost ;; esac
    echo "$address $port"
}

case "${1:-}" in
    start-foreground)
        shift
        # shellcheck disable=SC2086  # the *JVMFLAGS variables are word lists by contract
        exec "$JAVA" "-Dzookeeper.log.dir=$ZOO_LOG_DIR" "-Dzookeeper.log.file=$ZOO_LOG_FILE" \
            -XX:+HeapDumpOnOutOfMemoryError -XX:OnOutOfMemoryError='kill -9 %p' \
            -cp "$CLASSPATH" ${JVMFLAGS:-} $SERVER_JVMFLAGS \
            org.apache.zookeeper.server.quorum.QuorumPeerMain "$ZOOCFG" "$@"
        ;;
    status)
        read -r address port < <(client_address)
        echo "Client port found: $port. Client address: $address."
        # shellcheck disable=SC2086
        mode="$("$JAVA" "-Dzookeeper.log.dir=$ZOO_LOG_DIR" -cp "$CLASSPATH" $CLIENT_JVMFLAGS ${JVMFLAGS:-} \
            org.apache.zookeeper.client.FourLetterWordMain "$address" "$port" srvr 2>/dev/null | grep Mode || true)"
        if [ -z "$mode" ]; then
            echo "Error contacting service. It is probably not running."
            exit 1
        fi
        echo "$mode"
        ;;
    version)
        # shellcheck disable=SC2086
        exec "$JAVA" -cp "$CLASSPATH" $CLIENT_JVMFLAGS org.apache.zookeeper.version.VersionInfoMain
        ;;
    *)
        echo "Usage: $0 {start-foreground|status|version} (stand-in: no daemon verbs)" >&2
        exit 1
        ;;
esac
