#!/usr/bin/env bash
# Stand-in for the environment part of ZooKeeper's bin/zkEnv.sh (apache/zookeeper release-3.9.2), sourced by
# zkServer.sh: where the configuration is (ZOOCFGDIR, ZOOCFG), where logs go (ZOO_LOG_DIR), the class
# path (the configuration folder first, so logback.xml is found, then every jar in lib/), and the heap sizes of the
# server (ZK_SERVER_HEAP, default 1000 MB) and of clients such as `zkServer.sh status` (ZK_CLIENT_HEAP, 256 MB),
# added in front of SERVER_JVMFLAGS / CLIENT_JVMFLAGS as upstream does.
ZOOBINDIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ZOOKEEPER_PREFIX="$(dirname "$ZOOBINDIR")"

ZOOCFGDIR="${ZOOCFGDIR:-$ZOOKEEPER_PREFIX/conf}"
ZOOCFG="${ZOOCFG:-zoo.cfg}"
ZOOCFG="$ZOOCFGDIR/$ZOOCFG"
ZOO_LOG_DIR="${ZOO_LOG_DIR:-$ZOOKEEPER_PREFIX/logs}"
ZOO_LOG_FILE="${ZOO_LOG_FILE:-zookeeper-$(id -un 2>/dev/null || id -u)-server-$(hostname).log}"

# shellcheck disable=SC2034  # JAVA and the *JVMFLAGS are for the scripts that source this file
if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    JAVA="$JAVA_HOME/bin/java"
else
    JAVA="$(command -v java)" || { echo "zkEnv.sh: no java on PATH and JAVA_HOME unset" >&2; exit 1; }
fi

CLASSPATH="$ZOOCFGDIR"
for jar in "$ZOOKEEPER_PREFIX"/lib/*.jar; do
    CLASSPATH="$CLASSPATH:$jar"
done

SERVER_JVMFLAGS="-Xmx${ZK_SERVER_HEAP:-1000}m ${SERVER_JVMFLAGS:-}"
CLIENT_JVMFLAGS="-Xmx${ZK_CLIENT_HEAP:-256}m ${CLIENT_JVMFLAGS:-}"
export ZOOCFGDIR ZOOCFG ZOO_LOG_DIR CLASSPATH
