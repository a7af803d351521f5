#!/usr/bin/env bash
# Stand-in for Flink 1.20's bin/standalone-job.sh, foreground mode only: an application cluster whose job comes
# from the class path (`standalone-job.sh start-foreground --job-classname ... [job args]`).
FLINK_JM_SERVICE=standalonejob exec "$(cd "$(dirname "$0")" && pwd)/jobmanager.sh" "$@"
