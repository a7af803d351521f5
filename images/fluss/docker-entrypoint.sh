#!/bin/bash
# Stand-in entrypoint of apache/fluss:0.9.1-incubating, written for sagaz-lakehouse. Same contract as apache/fluss
# docker/fluss/docker-entrypoint.sh at v0.9.1-incubating:
#   1. drop every `bind.listeners:` line from conf/server.yaml (the image default would otherwise be kept beside
#      the caller's), append $FLUSS_PROPERTIES, and expand ${VAR} references in the whole file with envsubst
#      (so secrets can stay in the environment);
#   2. `coordinatorServer` / `tabletServer` [args]: run that server in the foreground; `help`: usage;
#      anything else runs as a command.
conf="${FLUSS_HOME}/conf/server.yaml"

sed -i '/bind.listeners:/d' "$conf"
if [ -n "${FLUSS_PROPERTIES}" ]; then
    printf '%s\n' "${FLUSS_PROPERTIES}" >> "$conf"
fi
envsubst < "$conf" > "$conf.tmp" && mv "$conf.tmp" "$conf"

case "$1" in
    help)
        printf 'Usage: %s (coordinatorServer|tabletServer)\n    Or %s help\n\n' "$(basename "$0")" "$(basename "$0")"
        exit 0
        ;;
    coordinatorServer)
        shift
        echo "Starting Coordinator Server"
        exec "$FLUSS_HOME/bin/coordinator-server.sh" start-foreground "$@"
        ;;
    tabletServer)
        shift
        echo "Starting Tablet Server"
        exec "$FLUSS_HOME/bin/tablet-server.sh" start-foreground "$@"
        ;;
esac

exec "$@"
