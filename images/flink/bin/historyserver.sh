#!/usr/bin/env bash
# Stand-in for Flink 1.20's bin/historyserver.sh, foreground mode only, with env.java.opts.historyserver added.
set -euo pipefail
bin="$(cd "$(dirname "$0")" && pwd)"
[ "${1:-}" = start-foreground ] || { echo "Usage: $0 start-foreground [args] (stand-in: no daemon mode)" >&2; exit 1; }
shift
# shellcheck source=config.sh
. "$bin/config.sh"
FLINK_ENV_JAVA_OPTS="$FLINK_ENV_JAVA_OPTS $(conf_value env.java.opts.historyserver "")"
export FLINK_ENV_JAVA_OPTS
exec "$bin/flink-console.sh" historyserver --configDir "$FLINK_CONF_DIR" "$@"
