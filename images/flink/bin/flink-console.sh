#!/usr/bin/env bash
# Stand-in for Flink 1.20's bin/flink-console.sh: runs one Flink process in the foreground with the console log
# layout. Usage: flink-console.sh standalonesession|standalonejob|taskexecutor|historyserver|sql-gateway [args]
# sql-gateway, as upstream, also puts the SQL Gateway jar and the flink-python jar from opt/ on the class path.
set -euo pipefail
# shellcheck source=config.sh
. "$(cd "$(dirname "$0")" && pwd)/config.sh"

service="${1:?usage: flink-console.sh standalonesession|standalonejob|taskexecutor|historyserver|sql-gateway [args]}"
shift
extra=""
case "$service" in
    standalonesession) main=org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint ;;
    standalonejob) main=org.apache.flink.container.entrypoint.StandaloneApplicationClusterEntryPoint ;;
    taskexecutor) main=org.apache.flink.runtime.taskexecutor.TaskManagerRunner ;;
    historyserver) main=org.apache.flink.runtime.webmonitor.history.HistoryServer ;;
    sql-gateway)
        main=org.apache.flink.table.gateway.SqlGateway
        extra=":$(opt_jar flink-sql-gateway)"
        if python_jar="$(opt_jar flink-python 2>/dev/null)"; then extra="$extra:$python_jar"; fi ;;
    *) echo "Unknown service '$service'." >&2; exit 1 ;;
esac

mkdir -p "$FLINK_LOG_DIR"
log="$FLINK_LOG_DIR/flink-$FLINK_IDENT_STRING-$service-0-$HOSTNAME.log"
logging=("-Dlog.file=$log" "-Dlog4j.configuration=file:$FLINK_CONF_DIR/log4j-console.properties"
         "-Dlog4j.configurationFile=file:$FLINK_CONF_DIR/log4j-console.properties")
echo "Starting $service as a console application on host $HOSTNAME."
# shellcheck disable=SC2086  # JVM_ARGS and FLINK_ENV_JAVA_OPTS are word lists by contract
exec "$JAVA_RUN" ${JVM_ARGS:-} $FLINK_ENV_JAVA_OPTS "${logging[@]}" -classpath "$(flink_classpath)$extra" "$main" "$@"
