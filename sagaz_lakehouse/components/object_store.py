"""MinIO: the S3-compatible object store holding Fluss's remote data and the Iceberg warehouse.

With ``object_store.kind: external`` there is no such component: the lake bucket lives in a store the user runs,
and every client gets its endpoint (``addresses.endpoints``).

The local target runs the server binary built from the pinned commit (the Go module proxy); containers run the
image of the same release tag. Both take the root credentials from ``MINIO_ROOT_USER``/``MINIO_ROOT_PASSWORD``.
"""

from __future__ import annotations

from sagaz_lakehouse import addresses, identities, versions
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.config import Settings

METRICS_PATH = "/minio/v2/metrics/cluster"  # cluster-wide: capacity, drives, S3 requests and errors


def minio(settings: Settings, view: s.View) -> s.Component | None:
    if settings.external_store:  # the user's own store: nothing to run
        return None
    p = settings.ports
    # The metrics endpoints want a bearer JWT (MINIO_PROMETHEUS_AUTH_TYPE jwt, MinIO's default; stated here so that
    # no environment can make them public): Prometheus sends identities.minio_metrics_token.
    credentials = {"MINIO_ROOT_USER": identities.ACCESS_KEY, "MINIO_ROOT_PASSWORD": identities.SECRET_KEY,
                   "MINIO_PROMETHEUS_AUTH_TYPE": "jwt"}
    # In a container every interface (":port"); on the user's host, loopback only.
    bind = addresses.LOOPBACK if view is s.View.EXTERNAL else ""

    def setup(at: s.Instance) -> s.Setup:
        args = ("server", at.data, "--address", f"{bind}:{p.minio}", "--console-address", f"{bind}:{p.minio_console}")

        def command(ctx: s.NativeContext) -> s.Process:
            return s.Process([str(ctx.home), *args], env=credentials)

        return s.Setup(
            # HOME must be writable: the server creates $HOME/.minio/certs.
            container=s.Container(args=args, env={**credentials, "HOME": s.TMP}, user=1000, probe_tool="curl",
                                  scratch=(s.Scratch(s.TMP, "16Mi", used="1Mi"),)),
            native=s.Native("minio", command),
        )

    return s.Component(
        s.MINIO, "minio", settings.images.minio, versions.MINIO.version, "S3-compatible object store", setup,
        # Clients read Fluss remote log segments and Iceberg data files straight from the store.
        ports=(s.Port("s3", p.minio, p.minio, clients=True, setting="minio"),
               s.Port("console", p.minio_console, p.minio_console, setting="minio_console")),
        health=s.Health("http", "s3", "/minio/health/ready"),
        metrics=s.Metrics("s3", METRICS_PATH, bearer=identities.MINIO_METRICS_TOKEN),
        data_dir="/data", volume_size=settings.volumes.minio, memory=settings.memory.minio)
