#!/bin/bash
# Stand-in entrypoint of zookeeper:3.9.2, written for sagaz-lakehouse. Same contract as 31z4/zookeeper-docker
# 3.9.2/docker-entrypoint.sh (commit c03e4eea):
#   - started as root with `zkServer.sh ...`: hand the data, datalog and log folders to the zookeeper user and
#     re-run this script as that user (gosu);
#   - no $ZOO_CONF_DIR/zoo.cfg yet: write one from the ZOO_* variables, the ZOO_SERVERS list (default: a single
#     server whose client port is 2181), ZOO_4LW_COMMANDS_WHITELIST and the ZOO_CFG_EXTRA entries;
#   - no $ZOO_DATA_DIR/myid yet: write ZOO_MY_ID (default 1);
#   - then run the command.
set -e

if [ "$1" = zkServer.sh ] && [ "$(id -u)" = 0 ]; then
    chown -R zookeeper "$ZOO_DATA_DIR" "$ZOO_DATA_LOG_DIR" "$ZOO_LOG_DIR"
    exec gosu zookeeper "$0" "$@"
fi

cfg="$ZOO_CONF_DIR/zoo.cfg"
if [ ! -f "$cfg" ]; then
    {
        printf 'dataDir=%s\n' "$ZOO_DATA_DIR"
        printf 'dataLogDir=%s\n' "$ZOO_DATA_LOG_DIR"
        printf 'tickTime=%s\n' "$ZOO_TICK_TIME"
        printf 'initLimit=%s\n' "$ZOO_INIT_LIMIT"
        printf 'syncLimit=%s\n' "$ZOO_SYNC_LIMIT"
        printf 'autopurge.snapRetainCount=%s\n' "$ZOO_AUTOPURGE_SNAPRETAINCOUNT"
        printf 'autopurge.purgeInterval=%s\n' "$ZOO_AUTOPURGE_PURGEINTERVAL"
        printf 'maxClientCnxns=%s\n' "$ZOO_MAX_CLIENT_CNXNS"
        printf 'standaloneEnabled=%s\n' "$ZOO_STANDALONE_ENABLED"
        printf 'admin.enableServer=%s\n' "$ZOO_ADMINSERVER_ENABLED"
        # Word-split on purpose: ZOO_SERVERS and ZOO_CFG_EXTRA are whitespace-separated lists of entries.
        for entry in ${ZOO_SERVERS:-server.1=localhost:2888:3888;2181}; do
            printf '%s\n' "$entry"
        done
        if [ -n "$ZOO_4LW_COMMANDS_WHITELIST" ]; then
            printf '4lw.commands.whitelist=%s\n' "$ZOO_4LW_COMMANDS_WHITELIST"
        fi
        for entry in $ZOO_CFG_EXTRA; do
            printf '%s\n' "$entry"
        done
    } >> "$cfg"
fi

if [ ! -f "$ZOO_DATA_DIR/myid" ]; then
    echo "${ZOO_MY_ID:-1}" > "$ZOO_DATA_DIR/myid"
fi

exec "$@"
