#!/bin/sh
# Stand-in entrypoint of quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z, written for sagaz-lakehouse. Same
# contract as minio/minio dockerscripts/docker-entrypoint.sh at that tag:
#   - arguments that do not start with `minio` are arguments of minio (`server /data` means `minio server /data`);
#   - the deprecated MINIO_USERNAME/MINIO_GROUPNAME (and MINIO_UID/MINIO_GID) run the server as that user through
#     `chroot --userspec`, adding the user (uid/gid 1000) when no ids are given; otherwise it runs as is (root).
if [ "$1" != minio ] && [ -n "$1" ]; then
    set -- minio "$@"
fi

if [ -n "$MINIO_USERNAME" ] && [ -n "$MINIO_GROUPNAME" ]; then
    if [ -n "$MINIO_UID" ] && [ -n "$MINIO_GID" ]; then
        exec chroot --userspec="$MINIO_UID:$MINIO_GID" / "$@"
    fi
    echo "$MINIO_USERNAME:x:1000:1000:$MINIO_USERNAME:/:/sbin/nologin" >> /etc/passwd
    echo "$MINIO_GROUPNAME:x:1000" >> /etc/group
    exec chroot --userspec="$MINIO_USERNAME:$MINIO_GROUPNAME" / "$@"
fi
exec "$@"
