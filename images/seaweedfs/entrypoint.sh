#!/bin/sh
# Entrypoint of the chrislusf/seaweedfs stand-in (images/seaweedfs/Dockerfile), written for sagaz-lakehouse. Same
# contract as upstream's docker/entrypoint.sh at 7506e5f91cd6 for the commands the project may use:
#   - started as root, it gives /data to seaweed (uid/gid 1000) when it does not own it, then runs itself as seaweed;
#   - `server` adds -dir=/data -volume.max=0 -master.volumeSizeLimitMB=1024 (without -volume.max=0 when -volume.max is
#     given), `mini` adds -dir=/data unless -dir is given, `master` -mdir=/data -volumeSizeLimitMB=1024, `volume`
#     -dir=/data -max=0 (without -max=0 when -max is given); these and `filer`/`s3` log to stderr (`s3` without the
#     flags upstream adds from S3_DOMAIN_NAME, S3_KEY_FILE and S3_CERT_FILE);
#   - anything else is passed to weed as it is.
set -e
if [ "$(id -u)" = "0" ]; then
  if [ "$(stat -c '%u:%g' /data)" != "$(id -u seaweed):$(id -g seaweed)" ]; then
    echo "Fixing /data ownership for seaweed user (uid=$(id -u seaweed), gid=$(id -g seaweed))"
    chown -R seaweed:seaweed /data || echo "Warning: Failed to change ownership of /data." >&2
  fi
  exec gosu seaweed "$0" "$@"
fi

given() {  # given NAME ARGS...: is -NAME or --NAME among ARGS, alone or as NAME=value?
  name="$1"; shift
  for arg in "$@"; do
    case "$arg" in
      "-$name"|"--$name"|"-$name="*|"--$name="*) return 0 ;;
    esac
  done
  return 1
}

[ $# -gt 0 ] || exec /usr/bin/weed
command="$1"
shift
case "$command" in
  server)
    if given volume.max "$@"; then set -- -dir=/data -master.volumeSizeLimitMB=1024 "$@"
    else set -- -dir=/data -volume.max=0 -master.volumeSizeLimitMB=1024 "$@"; fi
    exec /usr/bin/weed -logtostderr=true server "$@" ;;
  mini)
    given dir "$@" || set -- -dir=/data "$@"
    exec /usr/bin/weed -logtostderr=true mini "$@" ;;
  master)
    exec /usr/bin/weed -logtostderr=true master -mdir=/data -volumeSizeLimitMB=1024 "$@" ;;
  volume)
    if given max "$@"; then set -- -dir=/data "$@"; else set -- -dir=/data -max=0 "$@"; fi
    exec /usr/bin/weed -logtostderr=true volume "$@" ;;
  filer|s3)
    exec /usr/bin/weed -logtostderr=true "$command" "$@" ;;
  *)
    exec /usr/bin/weed "$command" "$@" ;;
esac
