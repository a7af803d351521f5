#!/bin/sh
# Entrypoint of sagaz-lakehouse/minio (images/minio/Dockerfile), written for sagaz-lakehouse. Same contract as
# minio/minio dockerscripts/docker-entrypoint.sh, unchanged from tag RELEASE.2025-09-07T16-13-09Z to 7aac2a2c5b7c:
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
