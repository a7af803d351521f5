#!/usr/bin/env bash
# Stand-in for fluss-dist's bin/config.sh (apache/fluss v0.9.1-incubating), sourced by the server scripts: where
# Fluss lives (FLUSS_HOME, FLUSS_CONF_DIR, FLUSS_LIB_DIR, FLUSS_PLUGINS_DIR, FLUSS_LOG_DIR), which java runs it
# (env.java.home in server.yaml, else JAVA_HOME, else PATH), the class path (every jar in lib/, fluss-server last and
# exactly once), and the JVM options from server.yaml (env.java.opts.all plus the per-role key), as upstream reads
# them: flat `key: value` lines, the last occurrence winning, anything after '#' ignored.
FLUSS_BIN_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
FLUSS_HOME="${FLUSS_HOME:-$(dirname "$FLUSS_BIN_DIR")}"
FLUSS_CONF_DIR="${FLUSS_CONF_DIR:-$FLUSS_HOME/conf}"
FLUSS_LIB_DIR="${FLUSS_LIB_DIR:-$FLUSS_HOME/lib}"
FLUSS_PLUGINS_DIR="${FLUSS_PLUGINS_DIR:-$FLUSS_HOME/plugins}"
FLUSS_YAML="$FLUSS_CONF_DIR/server.yaml"
export FLUSS_HOME FLUSS_CONF_DIR FLUSS_LIB_DIR FLUSS_PLUGINS_DIR FLUSS_BIN_DIR

conf_value() {  # key default
    local value
    value="$(sed -n "s/^[[:space:]]*$1[[:space:]]*:[[:space:]]*\([^#]*\).*/\1/p" "$FLUSS_YAML" | tail -n 1)"
    value="${value%"${value##*[![:space:]]}"}"   # trim trailing blanks
    value="${value#\"}"; value="${value%\"}"      # and one pair of surrounding quotes
    echo "${value:-$2}"
}

java_home="$(conf_value env.java.home "${JAVA_HOME:-}")"
if [ -n "$java_home" ] && [ -x "$java_home/bin/java" ]; then
    JAVA_RUN="$java_home/bin/java"
else
    JAVA_RUN="$(command -v java)" || { echo "Fluss: set JAVA_HOME or env.java.home in server.yaml" >&2; exit 1; }
fi

FLUSS_LOG_DIR="${FLUSS_LOG_DIR:-$(conf_value env.log.dir "$FLUSS_HOME/log")}"

fluss_classpath() {
    local jar server="" cp=""
    while IFS= read -r -d '' jar; do
        case "$(basename "$jar")" in
            fluss-server*.jar)
                [ -z "$server" ] || { echo "[ERROR] more than one fluss-server jar in $FLUSS_LIB_DIR" >&2; return 1; }
                server="$jar" ;;
            *) cp="${cp:+$cp:}$jar" ;;
        esac
    done < <(find "$FLUSS_LIB_DIR" ! -type d -name '*.jar' -print0 | sort -z)
    [ -n "$server" ] || { echo "[ERROR] no fluss-server jar in $FLUSS_LIB_DIR" >&2; return 1; }
    [ -z "${HADOOP_CLASSPATH:-}" ] || cp="${cp:+$cp:}$HADOOP_CLASSPATH"
    echo "${cp:+$cp:}$server"
}

# JVM options: what server.yaml asks for, -XX:+IgnoreUnrecognizedVMOptions first as upstream, and on Java 18+ the
# permission to install a security manager at run time (-Djava.security.manager=allow).
# Computed once: the role scripts add to it and export it before fluss-console.sh sources this file again.
if [ -z "${FLUSS_ENV_JAVA_OPTS:-}" ]; then
    FLUSS_ENV_JAVA_OPTS="-XX:+IgnoreUnrecognizedVMOptions $(conf_value env.java.opts.all "")"
    java_major="$("$JAVA_RUN" -XshowSettings:properties -version 2>&1 \
        | sed -n 's/.*java.specification.version = \([0-9.]*\).*/\1/p' | sed 's/^1\.//; s/\..*//')"
    if [ "${java_major:-0}" -gt 17 ]; then
        FLUSS_ENV_JAVA_OPTS="$FLUSS_ENV_JAVA_OPTS -Djava.security.manager=allow"
    fi
fi
