"""The lake maintenance service: keeps ``saga_events``' Iceberg table fast (compaction, snapshot expiry, orphan
files, metadata cleanup) on ``maintenance.schedule``, and serves the table's shape as Prometheus metrics.

Its implementation is ``sagaz_lakehouse/maintenance.py`` (standard library only), run as it is: natively with the
current Python on the local target (the supervisor starts it, the watchdog restarts it), mounted into the ``python``
image on compose and Kubernetes. A long-running service rather than a Kubernetes CronJob: the shape metrics and their
alert need a process between runs, and one loop keeps runs from overlapping the same way on every target.
It works through Trino (the maintenance procedures) and the REST catalog (the table's metadata), so it needs no
object-store credentials. ``maintenance.schedule: off`` leaves it out.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sagaz_lakehouse import addresses, identities, security, versions
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components.common import catalog_login, catalog_ready, metrics_bind, metrics_port
from sagaz_lakehouse.config import Settings, duration_seconds

MAINTENANCE_FILE = Path(__file__).resolve().parent.parent / "maintenance.py"
MOUNT_DIR = "/opt/sagaz-lakehouse"
CONTAINER_PORT = 9270
TABLE = "saga_events"
TRINO_PASSWORD_FILE = "trino-password"  # noqa: S105 - a file name; written 0600 (it holds the password)
TRINO_CA_FILE = "trino-ca.pem"
CATALOG_CREDENTIAL_FILE = "catalog-credential"  # written 0600 (the external catalog's client credentials)
LOGIN_FLAGS = {"oauth2-server-uri": "--catalog-oauth2-server-uri", "scope": "--catalog-scope"}
OVERDUE_GRACE = 300  # seconds past twice the schedule before a missed run is a finding or an alert (runs take minutes)


def ca_path(view: s.View, at: s.Instance) -> str:
    """Where it reads Trino's certificate (not a secret): beside its other files natively, beside its script in a
    container."""
    return f"{at.conf}/{TRINO_CA_FILE}" if view is s.View.EXTERNAL else f"{MOUNT_DIR}/{TRINO_CA_FILE}"


def trino_url(settings: Settings, view: s.View) -> str:
    """Trino's HTTPS endpoint as this process reaches it: loopback natively, the trino Service (a name its
    certificate must carry: security.trino_names) in a container network."""
    host = addresses.LOOPBACK if view is s.View.EXTERNAL else s.TRINO
    return f"https://{host}:{settings.ports.trino_https}"


def arguments(settings: Settings, view: s.View, at: s.Instance) -> list[str]:
    """What the service does and where: everything but the Trino password, which it reads from a file."""
    ep = addresses.endpoints(settings, view)
    trino = ep.trino
    login: list[str] = []
    if security.trino_auth_on(settings):  # HTTPS and the one Trino user, as every other client
        trino = trino_url(settings, view)
        login = ["--trino-user", security.TRINO_USER, "--trino-password-file", at.secret(TRINO_PASSWORD_FILE),
                 "--trino-ca", ca_path(view, at)]
    listen = addresses.LOOPBACK if view is s.View.EXTERNAL else addresses.ANY_ADDRESS
    login = [*login, *(arg for key, value in catalog_login(settings, credential=False).items()
                       if key in LOGIN_FLAGS for arg in (LOGIN_FLAGS[key], value))]
    return ["serve", "--catalog", ep.rest_catalog, "--warehouse", addresses.catalog_warehouse(settings),
            "--namespace", settings.lake.database, "--table", TABLE, "--trino", trino, *login,
            "--retention", str(int(duration_seconds(settings.snapshot_retention))),
            "--orphan-retention", str(int(duration_seconds(settings.orphan_retention))),
            "--file-size-threshold", settings.maintenance.file_size_threshold,
            "--metadata-versions", str(settings.maintenance.metadata_versions),
            "--every", str(int(duration_seconds(settings.maintenance_schedule))),
            "--metrics-host", listen, "--metrics-port", metrics_bind(view, at, CONTAINER_PORT)]


def lake_maintenance(settings: Settings, view: s.View) -> s.Component | None:
    if settings.maintenance_schedule == "off":
        return None
    script = s.ConfigFile("maintenance.py", MAINTENANCE_FILE.read_text(), mount=f"{MOUNT_DIR}/maintenance.py",
                          shared=True, native=False)

    def setup(at: s.Instance) -> s.Setup:
        args = arguments(settings, view, at)
        files: tuple[s.ConfigFile, ...] = (script,)
        if security.trino_auth_on(settings):
            files += (s.ConfigFile(TRINO_PASSWORD_FILE, security.TRINO_PASSWORD + "\n",
                                   mount=at.secret(TRINO_PASSWORD_FILE), secret=True),
                      s.ConfigFile(TRINO_CA_FILE, security.TRINO_CA, mount=ca_path(view, at)))
        # The external catalog's credential: a 0600 file natively; the variable from .env or the Secret in a
        # container (read by maintenance.py where no file is named), as the other credentials of containers.
        native_login: list[str] = []
        if settings.catalog_oauth2:
            files += (s.ConfigFile(CATALOG_CREDENTIAL_FILE, identities.CATALOG_CREDENTIAL + "\n"),)
            native_login = ["--catalog-credential-file", f"{at.conf}/{CATALOG_CREDENTIAL_FILE}"]

        def command(ctx: s.NativeContext) -> s.Process:
            # The marker names the run folder: the supervisor recognises its own processes by it (tasks.py's too).
            return s.Process([sys.executable, str(MAINTENANCE_FILE), f"--label={ctx.marker}", *args, *native_login])

        # Nothing is written but the interpreter's scratch; its root file system is read-only like every other.
        return s.Setup(container=s.Container(entrypoint=("python3", f"{MOUNT_DIR}/maintenance.py"), args=tuple(args),
                                             env=identities.catalog_credential_environment(settings),
                                             user=1000, probe_tool="python3",
                                             scratch=(s.Scratch(s.TMP, "16Mi", used="1Mi"),)),
                       native=s.Native("python", command), files=files)

    return s.Component(
        s.LAKE_MAINTENANCE, "sagaz-lakehouse", settings.images.python, versions.PYTHON.version,
        f"lake maintenance every {settings.maintenance_schedule}: compaction, snapshot expiry, orphan files", setup,
        ports=(metrics_port(CONTAINER_PORT, settings.ports.lake_maintenance, "lake_maintenance"),),
        health=s.Health("http", "metrics", "/healthz"),
        depends_on=((s.TRINO, s.Condition.HEALTHY), *catalog_ready(settings)),
        memory="96Mi", metrics=s.Metrics("metrics"), start_seconds=60,
        # the maintenance procedures through Trino (its HTTPS port where clients log in), the table's metadata (an
        # external catalog: the Kubernetes target opens its URI's port)
        reaches=((s.TRINO, "https" if security.trino_auth_on(settings) else "http"), (s.REST_CATALOG, "http")))
