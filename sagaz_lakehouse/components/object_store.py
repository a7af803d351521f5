"""MinIO: the S3-compatible object store holding Fluss's remote data and the Iceberg warehouse.

The local target runs the server binary built from the pinned commit (the Go module proxy); containers run the
image of the same release tag. Both take the root credentials from ``MINIO_ROOT_USER``/``MINIO_ROOT_PASSWORD``.
"""

from __future__ import annotations

from sagaz_lakehouse import stack as s
from sagaz_lakehouse import versions, wiring
from sagaz_lakehouse.config import Settings
from sagaz_lakehouse.stack import (
    Component,
    Container,
    Health,
    Instance,
    Native,
    NativeContext,
    Port,
    Process,
    Setup,
    View,
)


def minio(settings: Settings, view: View) -> Component:
    p = settings.ports
    credentials = {"MINIO_ROOT_USER": wiring.ACCESS_KEY, "MINIO_ROOT_PASSWORD": wiring.SECRET_KEY}
    # In a container every interface (":port"); on the user's host, loopback only.
    bind = wiring.LOOPBACK if view is View.EXTERNAL else ""

    def setup(at: Instance) -> Setup:
        args = ("server", at.data, "--address", f"{bind}:{p.minio}", "--console-address", f"{bind}:{p.minio_console}")

        def command(ctx: NativeContext) -> Process:
            return Process([str(ctx.home), *args], env=credentials)

        return Setup(
            # HOME must be writable: the server creates $HOME/.minio/certs.
            container=Container(args=args, env={**credentials, "HOME": "/tmp"}, user=1000,  # noqa: S108
                                probe_tool="curl", scratch=("/tmp",)),  # noqa: S108 - the pod's own emptyDir
            native=Native("minio", command),
        )

    return Component(
        s.MINIO, "minio", settings.images.minio, versions.MINIO.version, "S3-compatible object store", setup,
        ports=(Port("s3", p.minio, p.minio), Port("console", p.minio_console, p.minio_console)),
        health=Health("http", "s3", "/minio/health/ready"),
        data_dir="/data", volume_size=settings.volumes.minio, memory=settings.memory.minio)
