#!/usr/bin/env bash
# Stand-in for Flink 1.20's bin/taskmanager.sh, foreground mode only:
# `taskmanager.sh start-foreground [-Dkey=value ...]` sizes the TaskManager JVM with Flink's memory model
# (BashJavaUtils GET_TM_RESOURCE_PARAMS) and runs the TaskManagerRunner with env.java.opts.taskmanager added.
set -euo pipefail
bin="$(cd "$(dirname "$0")" && pwd)"
[ "${1:-}" = start-foreground ] || { echo "Usage: $0 start-foreground [args] (stand-in: no daemon mode)" >&2; exit 1; }
shift
# shellcheck source=config.sh
. "$bin/config.sh"
FLINK_ENV_JAVA_OPTS="$FLINK_ENV_JAVA_OPTS $(conf_value env.java.opts.taskmanager "")"
params="$(bash_java_utils GET_TM_RESOURCE_PARAMS "$@")"
JVM_ARGS="${JVM_ARGS:-} $(sed -n 1p <<<"$params")"
read -r -a dynamic <<<"$(sed -n 2p <<<"$params")"
export FLINK_ENV_JAVA_OPTS JVM_ARGS
exec "$bin/flink-console.sh" taskexecutor "${dynamic[@]}" --configDir "$FLINK_CONF_DIR" "$@"
