#!/usr/bin/env bash
# submit-tiering in a container of the Flink image (compose and Kubernetes): submits the Fluss lake tiering job with
# Flink's own client (`flink run --detached`, which goes in through POST /jobs), so the JobManager needs no jar
# upload handlers (web.submit.enable: false in prod). The same steps as tasks.py's submit-tiering, which the local
# target runs: wait (bounded) until the TaskManagers are registered, submit unless a job of that name is active,
# wait until it runs. The client reads rest.address and rest.port from the mounted conf/config.yaml.
#
#   submit-tiering.sh REST_URL TASKMANAGERS JOB_NAME MAIN_CLASS JAR -- JOB_ARGS...
set -euo pipefail
rest="$1" taskmanagers="$2" name="$3" main_class="$4" jar="$5"
shift 5
[ "${1:-}" != -- ] || shift
# An external catalog's client credentials come in the environment, not in this script's arguments: the job takes
# its catalog properties as arguments only (FlussLakeTiering, 0.9.1), so submit() hands them to Flink's client in an
# argument file (as tasks.py does on the local target), never on a command line a process listing shows.
wait_seconds="${SUBMIT_TIERING_WAIT_SECONDS:-300}"
deadline=$((SECONDS + wait_seconds))

wait_for() {  # WHAT COMMAND...: until COMMAND succeeds, or fail naming WHAT after the deadline
    local what="$1"
    shift
    until "$@"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "submit-tiering: $what: still not ready after ${wait_seconds}s" >&2
            exit 1
        fi
        sleep 2
    done
}

registered() {  # the JobManager's /overview counts enough TaskManagers
    local count
    count="$(wget -q -O - "$rest/overview" 2>/dev/null | grep -o '"taskmanagers":[0-9]*' | cut -d: -f2)"
    [ "${count:-0}" -ge "$taskmanagers" ]
}

active_job() {  # the id of an active job of that name, from `flink list` ("<date> : <id> : <name> (<state>)")
    local listing
    if ! listing="$(flink list 2>&1)"; then
        echo "submit-tiering: \`flink list\` failed:" >&2
        echo "$listing" | tail -n 40 >&2
        exit 1
    fi
    { grep -F " : $name (" <<<"$listing" || true; } \
        | { grep -E '\((CREATED|INITIALIZING|RUNNING|RESTARTING|RECONCILING)\)$' || true; } \
        | head -n 1 | awk -F ' : ' '{print $2}'
}

state() {  # the job's state from /jobs/<id> (its first "state" field; vertices report "status")
    wget -q -O - "$rest/jobs/$1" 2>/dev/null | grep -o '"state":"[A-Z]*"' | head -n 1 | cut -d'"' -f4
}

submit() {  # flink run --detached --class MAIN_CLASS JAR ARGS...; the credential, if any, only in a 0600 file
    if [ -z "${CATALOG_CREDENTIAL:-}" ]; then
        flink run --detached --class "$main_class" "$jar" "$@"
        return
    fi
    # What bin/flink runs (env.java.opts.all from config.yaml: the reflective access Flink needs on Java 17; its CLI
    # log settings; CliFrontend on lib/), with every argument after `java` in the launcher's @argfile (JDK 9+):
    # quoted tokens, '\' and '"' escaped.
    local home="${FLINK_HOME:-/opt/flink}" folder token status=0 jvm_options=()
    local conf="${FLINK_CONF_DIR:-$home/conf}"
    read -r -a jvm_options <<<"$(sed -n 's/^env\.java\.opts\.all: *//p' "$conf/config.yaml" 2>/dev/null || true)"
    folder="$(mktemp -d)"  # 0700
    (
        umask 077
        for token in "${jvm_options[@]}" "-Dlog.file=$folder/client.log" \
                "-Dlog4j.configurationFile=file:$conf/log4j-cli.properties" \
                "-cp" "$home/lib/*" "org.apache.flink.client.cli.CliFrontend" "run" "--detached" \
                "--class" "$main_class" "$jar" "$@" "--datalake.iceberg.credential" "$CATALOG_CREDENTIAL"; do
            token="${token//\\/\\\\}"
            printf '"%s"\n' "${token//\"/\\\"}"
        done >"$folder/arguments"
    )
    FLINK_CONF_DIR="$conf" FLINK_LIB_DIR="$home/lib" FLINK_PLUGINS_DIR="$home/plugins" \
        "${JAVA_HOME:+$JAVA_HOME/bin/}java" "@$folder/arguments" || status=$?
    rm -rf "$folder"
    return "$status"
}

wait_for "$taskmanagers TaskManager(s) registered at $rest" registered
job="$(active_job)"
if [ -n "$job" ]; then
    outcome="already active"
else
    if ! output="$(submit "$@" 2>&1)"; then
        echo "submit-tiering: Flink's client failed:" >&2
        echo "$output" | tail -n 40 >&2
        exit 1
    fi
    job="$(grep -o 'JobID [0-9a-f]\{32\}' <<<"$output" | head -n 1 | cut -d' ' -f2)"
    if [ -z "$job" ]; then
        echo "submit-tiering: Flink's client printed no job id:" >&2
        echo "$output" | tail -n 40 >&2
        exit 1
    fi
    outcome="submitted with Flink's client"
fi

running() {
    local now
    now="$(state "$job")"
    case "$now" in
        FAILED|CANCELED|FINISHED)
            echo "submit-tiering: job $job is $now; see the JobManager and TaskManager logs" >&2
            exit 1 ;;
    esac
    [ "$now" = RUNNING ]
}
wait_for "tiering job $job RUNNING" running
echo "tiering job $job $outcome, RUNNING"
