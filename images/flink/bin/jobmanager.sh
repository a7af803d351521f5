#!/usr/bin/env bash
# Stand-in for Flink 1.20's bin/jobmanager.sh, foreground mode only:
# `jobmanager.sh start-foreground [-Dkey=value ...]` sizes the JobManager JVM with Flink's memory model
# (BashJavaUtils GET_JM_RESOURCE_PARAMS on conf/ plus the given options) and runs the session cluster entry point
# with env.java.opts.jobmanager added. standalone-job.sh sources this with FLINK_JM_SERVICE=standalonejob.
set -euo pipefail
bin="$(cd "$(dirname "$0")" && pwd)"
[ "${1:-}" = start-foreground ] || { echo "Usage: $0 start-foreground [args] (stand-in: no daemon mode)" >&2; exit 1; }
shift
# shellcheck source=config.sh
. "$bin/config.sh"
FLINK_ENV_JAVA_OPTS="$FLINK_ENV_JAVA_OPTS $(conf_value env.java.opts.jobmanager "")"
params="$(bash_java_utils GET_JM_RESOURCE_PARAMS "$@")"
JVM_ARGS="${JVM_ARGS:-} $(sed -n 1p <<<"$params")"
read -r -a dynamic <<<"$(sed -n 2p <<<"$params")"
export FLINK_ENV_JAVA_OPTS JVM_ARGS
exec "$bin/flink-console.sh" "${FLINK_JM_SERVICE:-standalonesession}" "${dynamic[@]}" \
    --configDir "$FLINK_CONF_DIR" --executionMode cluster "$@"
