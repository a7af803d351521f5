#!/usr/bin/env bash
# Stand-in for Flink 1.20's bin/config-parser-utils.sh: `config-parser-utils.sh CONF_DIR BIN_DIR LIB_DIR [args]`
# applies -Dkey=value, -repKV key,old,new, -rmKey key and -rmKV key=value to CONF_DIR's configuration with
# BashJavaUtils (UPDATE_AND_GET_FLINK_CONFIGURATION) and writes the result back to config.yaml (or flink-conf.yaml
# when that legacy file is present), as the image entrypoint and Dockerfile use it.
set -euo pipefail
if [ "$#" -lt 3 ]; then
    echo "Usage: config-parser-utils.sh FLINK_CONF_DIR FLINK_BIN_DIR FLINK_LIB_DIR [dynamic args...]" >&2
    exit 1
fi
conf_dir="$1" bin_dir="$2" lib_dir="$3"
shift 3
dist="$(find "$lib_dir" -name 'flink-dist*.jar' | head -n 1)"
java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
if ! output="$("$java" -classpath "$bin_dir/bash-java-utils.jar:$dist" org.apache.flink.runtime.util.bash.BashJavaUtils \
        UPDATE_AND_GET_FLINK_CONFIGURATION --configDir "$conf_dir" "$@" 2>&1)" \
    || ! grep -q '^BASH_JAVA_UTILS_EXEC_RESULT:' <<<"$output"; then
    echo "[ERROR] Could not get configurations properly, the result is :"
    echo "$output"
    exit 1
fi
target="$conf_dir/config.yaml"
[ ! -e "$conf_dir/flink-conf.yaml" ] || target="$conf_dir/flink-conf.yaml"
sed -n 's/^BASH_JAVA_UTILS_EXEC_RESULT://p' <<<"$output" > "$target"
