#!/usr/bin/env bash
# Stand-in for fluss-dist's bin/coordinator-server.sh (apache/fluss v0.9.1-incubating), foreground mode only:
# `coordinator-server.sh start-foreground [-Dkey=value ...]` runs the CoordinatorServer on conf/ with the JVM options
# of env.java.opts.coordinator-server added.
set -euo pipefail
bin="$(cd "$(dirname "$0")" && pwd)"
[ "${1:-}" = start-foreground ] || { echo "Usage: $0 start-foreground [args] (stand-in: no daemon mode)" >&2; exit 1; }
shift
# shellcheck source=config.sh
. "$bin/config.sh"
FLUSS_ENV_JAVA_OPTS="$FLUSS_ENV_JAVA_OPTS $(conf_value env.java.opts.coordinator-server "")"
export FLUSS_ENV_JAVA_OPTS
exec "$bin/fluss-console.sh" coordinator-server --configDir "$FLUSS_CONF_DIR" "$@"
