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
# An external catalog's client credentials come in the environment, not in this script's arguments (tasks.py does
# the same): the job takes its catalog properties as arguments only (FlussLakeTiering, 0.9.1).
if [ -n "${CATALOG_CREDENTIAL:-}" ]; then
    set -- "$@" --datalake.iceberg.credential "$CATALOG_CREDENTIAL"
fi
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

wait_for "$taskmanagers TaskManager(s) registered at $rest" registered
job="$(active_job)"
if [ -n "$job" ]; then
    outcome="already active"
else
    if ! output="$(flink run --detached --class "$main_class" "$jar" "$@" 2>&1)"; then
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
