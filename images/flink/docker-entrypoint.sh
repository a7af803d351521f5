#!/usr/bin/env bash
# Stand-in entrypoint of flink:1.20.3-scala_2.12-java17, written for sagaz-lakehouse. Same contract as
# apache/flink-docker 1.20/scala_2.12-java17-ubuntu/docker-entrypoint.sh (commit ea62362d):
#   - jemalloc is preloaded unless DISABLE_JEMALLOC=true;
#   - ENABLE_BUILT_IN_PLUGINS (';'-separated jar names from opt/) are linked into plugins/<name>/;
#   - conf/config.yaml gets jobmanager.rpc.address=$JOB_MANAGER_RPC_ADDRESS (default: this host's name),
#     blob.server.port=6124, query.server.port=6125, taskmanager.numberOfTaskSlots from
#     TASK_MANAGER_NUMBER_OF_TASK_SLOTS, then every `key: value` line of FLINK_PROPERTIES (whitespace removed, the
#     value run through envsubst), all through bin/config-parser-utils.sh, in every mode;
#   - jobmanager | standalone-job | taskmanager | history-server [args]: that process in the foreground; help:
#     usage; anything else runs as a command. When started as root, the process runs as user flink (gosu).
conf_dir="$FLINK_HOME/conf"

as_flink() {  # the command prefix that drops root
    if [ "$(id -u)" = 0 ]; then echo gosu flink; fi
}

preload_jemalloc() {
    [ "${DISABLE_JEMALLOC:-false}" = false ] || return 0
    local lib fallback=/usr/lib/x86_64-linux-gnu/libjemalloc.so
    lib="/usr/lib/$(uname -m)-linux-gnu/libjemalloc.so"
    if [ -f "$lib" ]; then
        export LD_PRELOAD="$LD_PRELOAD:$lib"
    elif [ -f "$fallback" ]; then
        export LD_PRELOAD="$LD_PRELOAD:$fallback"
    else
        echo "WARNING: attempted to load jemalloc from $lib but the library couldn't be found." \
             "glibc will be used instead."
    fi
}

enable_plugins() {
    [ -n "$ENABLE_BUILT_IN_PLUGINS" ] || return 0
    echo "Enabling required built-in plugins"
    local jar name
    for jar in $(tr ';' ' ' <<<"$ENABLE_BUILT_IN_PLUGINS"); do
        name="${jar%.jar}"
        if [ ! -e "$FLINK_HOME/opt/$jar" ]; then
            echo "Plugin $jar does not exist. Exiting."
            exit 1
        fi
        mkdir -p "$FLINK_HOME/plugins/$name"
        ln -fs "$FLINK_HOME/opt/$jar" "$FLINK_HOME/plugins/$name"
        echo "Successfully enabled $jar"
    done
}

set_options() {  # key value [key value ...] -> -Dkey=value for config-parser-utils.sh
    local params=()
    while [ $# -gt 0 ]; do
        params+=("-D$1=$2")
        shift 2
    done
    [ ${#params[@]} -eq 0 ] || "$FLINK_HOME/bin/config-parser-utils.sh" "$conf_dir" "$FLINK_HOME/bin" \
        "$FLINK_HOME/lib" "${params[@]}"
}

apply_properties() {
    local line key value options=()
    while IFS= read -r line; do
        line="$(tr -d '[:space:]' <<<"$line")"
        [ -n "$line" ] || continue
        key="${line%%:*}"
        value="$(envsubst <<<"${line#*:}")"
        options+=("$key" "$value")
    done <<<"$FLINK_PROPERTIES"
    [ ${#options[@]} -eq 0 ] || set_options "${options[@]}"
}

prepare_configuration() {
    local options=(jobmanager.rpc.address "${JOB_MANAGER_RPC_ADDRESS:-$(hostname -f)}"
                   blob.server.port 6124 query.server.port 6125)
    if [ -n "$TASK_MANAGER_NUMBER_OF_TASK_SLOTS" ]; then
        options+=(taskmanager.numberOfTaskSlots "$TASK_MANAGER_NUMBER_OF_TASK_SLOTS")
    fi
    set_options "${options[@]}"
    [ -z "$FLINK_PROPERTIES" ] || apply_properties
}

preload_jemalloc
enable_plugins
prepare_configuration

case "$1" in
    help)
        printf 'Usage: %s (jobmanager|standalone-job|taskmanager|history-server)\n    Or %s help\n\n' \
            "$(basename "$0")" "$(basename "$0")"
        printf 'By default, Flink image adopts jemalloc as default memory allocator. This behavior can be disabled'
        printf " by setting the 'DISABLE_JEMALLOC' environment variable to 'true'.\n"
        exit 0
        ;;
    jobmanager|standalone-job|taskmanager|history-server)
        role="$1"
        shift
        case "$role" in
            jobmanager) script=jobmanager.sh; echo "Starting Job Manager" ;;
            standalone-job) script=standalone-job.sh; echo "Starting Job Manager" ;;
            taskmanager) script=taskmanager.sh; echo "Starting Task Manager" ;;
            history-server) script=historyserver.sh; echo "Starting History Server" ;;
        esac
        # shellcheck disable=SC2046  # as_flink prints nothing or two words
        exec $(as_flink) "$FLINK_HOME/bin/$script" start-foreground "$@"
        ;;
esac

# shellcheck disable=SC2046
exec $(as_flink) "$@"
