#!/usr/bin/env bash
# Stand-in for fluss-dist's bin/tablet-server.sh (apache/fluss v0.9.1-incubating), foreground mode only:
# `tablet-server.sh start-foreground [-Dkey=value ...]` runs the TabletServer on conf/; G1 unless server.yaml sets
# JVM options, plus env.java.opts.tablet-server, as upstream.
set -euo pipefail
bin="$(cd "$(dirname "$0")" && pwd)"
[ "${1:-}" = start-foreground ] || { echo "Usage: $0 start-foreground [args] (stand-in: no daemon mode)" >&2; exit 1; }
shift
# shellcheck source=config.sh
. "$bin/config.sh"
ts_opts="$(conf_value env.java.opts.tablet-server "")"
if [ -z "$(conf_value env.java.opts.all "")" ] && [ -z "$ts_opts" ]; then
    export JVM_ARGS="${JVM_ARGS:-} -XX:+UseG1GC"
fi
FLUSS_ENV_JAVA_OPTS="$FLUSS_ENV_JAVA_OPTS $ts_opts"
export FLUSS_ENV_JAVA_OPTS
exec "$bin/fluss-console.sh" tablet-server --configDir "$FLUSS_CONF_DIR" "$@"
