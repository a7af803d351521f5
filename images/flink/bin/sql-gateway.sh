#!/usr/bin/env bash
# Stand-in for Flink 1.20's bin/sql-gateway.sh (apache/flink flink-table/flink-sql-gateway/bin/sql-gateway.sh),
# foreground mode only: `sql-gateway.sh start-foreground [-Dkey=value ...]` adds env.java.opts.sql-gateway to the
# JVM options and runs the SQL Gateway (org.apache.flink.table.gateway.SqlGateway) through flink-console.sh, which
# puts the gateway jar from opt/ on the class path. The gateway reads conf/config.yaml (FLINK_CONF_DIR) plus the
# given -D options. Like upstream it sets no heap size of its own: env.java.opts.sql-gateway may.
set -euo pipefail
bin="$(cd "$(dirname "$0")" && pwd)"
case "${1:-}" in
    -h|--help) echo "Usage: $0 start-foreground [-Dkey=value ...] (stand-in: no daemon mode)"; exit 0 ;;
    start-foreground) shift ;;
    *) echo "Usage: $0 start-foreground [args] (stand-in: no daemon mode)" >&2; exit 1 ;;
esac
# shellcheck source=config.sh
. "$bin/config.sh"
FLINK_ENV_JAVA_OPTS="$FLINK_ENV_JAVA_OPTS $(conf_value env.java.opts.sql-gateway "")"
export FLINK_ENV_JAVA_OPTS
exec "$bin/flink-console.sh" sql-gateway "$@"
