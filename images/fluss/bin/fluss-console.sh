#!/usr/bin/env bash
# Stand-in for fluss-dist's bin/fluss-console.sh (apache/fluss v0.9.1-incubating): runs one Fluss service in the
# foreground with the console log layout (conf/log4j-console.properties) and the log file name upstream uses.
# Usage: fluss-console.sh coordinator-server|tablet-server [args]
set -euo pipefail
# shellcheck source=config.sh
. "$(cd "$(dirname "$0")" && pwd)/config.sh"

service="${1:?usage: fluss-console.sh coordinator-server|tablet-server [args]}"
shift
case "$service" in
    coordinator-server) main=org.apache.fluss.server.coordinator.CoordinatorServer ;;
    tablet-server) main=org.apache.fluss.server.tablet.TabletServer ;;
    *) echo "Unknown service '$service'." >&2; exit 1 ;;
esac

mkdir -p "$FLUSS_LOG_DIR"
log="$FLUSS_LOG_DIR/fluss-${USER:-$(id -un)}-$service-0-${HOSTNAME:-$(hostname)}.log"
logging=("-Dlog.file=$log" "-Dlog4j.configuration=file:$FLUSS_CONF_DIR/log4j-console.properties"
         "-Dlog4j.configurationFile=file:$FLUSS_CONF_DIR/log4j-console.properties")
echo "Starting $service as a console application on host ${HOSTNAME:-$(hostname)}."

# Apache Arrow (Fluss's columnar log format) needs java.nio opened on Java 17+.
# shellcheck disable=SC2086  # JVM_ARGS and FLUSS_ENV_JAVA_OPTS are word lists by contract
exec "$JAVA_RUN" ${JVM_ARGS:-} --add-opens=java.base/java.nio=org.apache.arrow.memory.core,ALL-UNNAMED \
    $FLUSS_ENV_JAVA_OPTS "${logging[@]}" -classpath "$(fluss_classpath)" "$main" "$@"
