#!/usr/bin/env bash
# Stand-in for Flink 1.20's bin/config.sh + bin/bash-java-utils.sh (apache/flink flink-dist/src/main/flink-bin/bin),
# sourced by the other scripts: the folders (FLINK_HOME, FLINK_CONF_DIR, FLINK_LIB_DIR, ...), which java runs Flink
# (env.java.home, else JAVA_HOME, else PATH), the class path (lib/*.jar sorted, flink-dist last), and the settings the
# scripts need from conf/config.yaml (env.java.opts.*, env.log.dir), read as upstream does: BashJavaUtils flattens
# the configuration in a short-lived JVM (loaded once per process tree here, then exported).
FLINK_BIN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
FLINK_HOME="${FLINK_HOME:-$(dirname "$FLINK_BIN_DIR")}"
FLINK_CONF_DIR="${FLINK_CONF_DIR:-$FLINK_HOME/conf}"
FLINK_LIB_DIR="${FLINK_LIB_DIR:-$FLINK_HOME/lib}"
FLINK_OPT_DIR="${FLINK_OPT_DIR:-$FLINK_HOME/opt}"
FLINK_PLUGINS_DIR="${FLINK_PLUGINS_DIR:-$FLINK_HOME/plugins}"
export FLINK_HOME FLINK_BIN_DIR FLINK_CONF_DIR FLINK_LIB_DIR FLINK_OPT_DIR FLINK_PLUGINS_DIR

# Only env.java.home must be read before any JVM runs: a plain `key: value` line.
java_home="$(sed -n 's/^[[:space:]]*env\.java\.home[[:space:]]*:[[:space:]]*\([^#]*\).*/\1/p' \
    "$FLINK_CONF_DIR/config.yaml" 2>/dev/null | tail -n 1 | tr -d '[:space:]')"
java_home="${java_home:-${JAVA_HOME:-}}"
if [ -n "$java_home" ] && [ -x "$java_home/bin/java" ]; then
    JAVA_RUN="$java_home/bin/java"
else
    JAVA_RUN="$(command -v java)" || { echo "Please specify JAVA_HOME or env.java.home." >&2; exit 1; }
fi
export JAVA_RUN

flink_dist_jar() {
    local found
    found="$(find "$FLINK_LIB_DIR" -name 'flink-dist*.jar')"
    if [ -z "$found" ]; then
        echo "[ERROR] Flink distribution jar not found in $FLINK_LIB_DIR." >&2; return 1
    elif [ "$(wc -l <<<"$found")" -gt 1 ]; then
        echo "[ERROR] Multiple flink-dist*.jar found in $FLINK_LIB_DIR. Please resolve." >&2; return 1
    fi
    echo "$found"
}

opt_jar() {  # PREFIX: the one jar in opt/ named PREFIX*.jar (upstream: findSqlGatewayJar, findFlinkPythonJar)
    local found
    found="$(find "$FLINK_OPT_DIR" -name "$1*.jar")"
    if [ -z "$found" ]; then
        echo "[ERROR] $1 jar not found in $FLINK_OPT_DIR." >&2; return 1
    elif [ "$(wc -l <<<"$found")" -gt 1 ]; then
        echo "[ERROR] Multiple $1*.jar found in $FLINK_OPT_DIR. Please resolve." >&2; return 1
    fi
    echo "$found"
}

flink_classpath() {
    local jar dist="" cp=""
    while IFS= read -r -d '' jar; do
        if [[ "$jar" =~ .*/flink-dist[^/]*\.jar$ ]]; then dist="$jar"; else cp="${cp:+$cp:}$jar"; fi
    done < <(find "$FLINK_LIB_DIR" ! -type d -name '*.jar' -print0 | sort -z)
    [ -n "$dist" ] || { echo "[ERROR] Flink distribution jar not found in $FLINK_LIB_DIR." >&2; return 1; }
    echo "${cp:+$cp:}$dist"
}

# bash_java_utils COMMAND [args]: run BashJavaUtils; prints its result lines (prefix removed) or fails with its log.
bash_java_utils() {
    local command="$1" output
    shift
    output="$("$JAVA_RUN" -classpath "$FLINK_BIN_DIR/bash-java-utils.jar:$(flink_dist_jar)" \
        org.apache.flink.runtime.util.bash.BashJavaUtils "$command" --configDir "$FLINK_CONF_DIR" "$@" 2>&1)" || {
        echo "[ERROR] Cannot run BashJavaUtils to execute command $command." >&2
        echo "$output" >&2
        return 1
    }
    if ! grep -q '^BASH_JAVA_UTILS_EXEC_RESULT:' <<<"$output"; then
        echo "[ERROR] BashJavaUtils $command gave no result:" >&2
        echo "$output" >&2
        return 1
    fi
    sed -n 's/^BASH_JAVA_UTILS_EXEC_RESULT://p' <<<"$output"
}

if [ -z "${_FLINK_FLAT_CONF+set}" ]; then
    _FLINK_FLAT_CONF="$(bash_java_utils UPDATE_AND_GET_FLINK_CONFIGURATION -flatten)" || exit 1
    export _FLINK_FLAT_CONF
fi

conf_value() {  # key default: from the flattened configuration, the last occurrence winning
    local value
    value="$(sed -n "s/^$1: //p" <<<"$_FLINK_FLAT_CONF" | tail -n 1)"
    echo "${value:-$2}"
}

FLINK_LOG_DIR="${FLINK_LOG_DIR:-$(conf_value env.log.dir "$FLINK_HOME/log")}"
FLINK_ENV_JAVA_OPTS="${FLINK_ENV_JAVA_OPTS:-$(conf_value env.java.opts.all "")}"
FLINK_IDENT_STRING="${FLINK_IDENT_STRING:-${USER:-$(id -un)}}"
HOSTNAME="${HOSTNAME:-$(hostname)}"
export FLINK_LOG_DIR
