"""Lake maintenance as the CLI sees it: its policy and the servers it uses from the settings and the host's
endpoints (``maintain``), and what ``status`` and ``doctor`` say about the table's shape.

The maintenance itself is ``sagaz_lakehouse.maintenance`` (standard library only: the same file runs as the
``lake-maintenance`` service on every target); this module only translates settings into its terms.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sagaz_lakehouse import maintenance
from sagaz_lakehouse.addresses import Endpoints
from sagaz_lakehouse.components.maintenance import OVERDUE_GRACE, TABLE
from sagaz_lakehouse.config import Settings, duration_seconds

CLI_TRINO_USER = "sagaz-lakehouse"  # who Trino sees run `maintain` where it takes any user name (dev)
METADATA_WARN_BYTES = 16 * 2**20  # every tiering commit rewrites the metadata: beyond this, commits slow down
SNAPSHOT_SLACK = 1.5  # snapshots kept may exceed what the retention holds at the freshness by half before a finding


def policy(settings: Settings) -> maintenance.Policy:
    return maintenance.Policy(retention=int(duration_seconds(settings.snapshot_retention)),
                              orphan_retention=int(duration_seconds(settings.orphan_retention)),
                              file_size_threshold=settings.maintenance.file_size_threshold,
                              metadata_versions=settings.maintenance.metadata_versions)


def lake(settings: Settings, endpoints: Endpoints) -> maintenance.Lake:
    """The table and the servers that maintain it, as this host reaches them (with the Trino login where Trino
    takes logins)."""
    login = endpoints.trino_login
    trino = (maintenance.Trino(login.url, login.user, login.password, login.ca_file) if login is not None
             else maintenance.Trino(endpoints.trino, CLI_TRINO_USER))
    from sagaz_lakehouse import clients

    return maintenance.Lake(clients.rest_catalog(settings, endpoints), trino, settings.lake.database, TABLE)


@dataclass(frozen=True)
class Finding:
    kind: str
    detail: str
    hint: str


def summary(shape: maintenance.Shape, now: float | None = None) -> str:
    now = time.time() if now is None else now
    maintained = ("never maintained" if shape.maintained_at is None
                  else f"maintained {_ago(now - shape.maintained_at)} ago")
    return (f"{shape.data_files} data files (average {_size(shape.average_file_bytes)}), {shape.delete_files} "
            f"delete files, {shape.snapshots} snapshots, metadata {_size(shape.metadata_bytes)}, {maintained}")


def findings(settings: Settings, shape: maintenance.Shape, first_snapshot_ms: int | None,
             now: float | None = None) -> list[Finding]:
    """What about the table's shape needs attention, each with what to do. ``first_snapshot_ms``: when the table
    got its first snapshot (a table younger than one schedule has not been due yet)."""
    now = time.time() if now is None else now
    out: list[Finding] = []
    schedule = settings.maintenance_schedule
    hint_run = "run `sagaz-lakehouse maintain` now"
    files_limit = settings.maintenance.max_files_per_bucket * settings.lake.buckets
    if schedule != "off":
        due = 2 * duration_seconds(schedule) + OVERDUE_GRACE
        since = shape.maintained_at if shape.maintained_at is not None else (
            first_snapshot_ms / 1000 if first_snapshot_ms else now)
        if now - since > due:
            last = "never ran" if shape.maintained_at is None else f"last ran {_ago(now - since)} ago"
            out.append(Finding("maintenance overdue", f"lake maintenance {last} (schedule {schedule})",
                               f"see `sagaz-lakehouse logs lake-maintenance`; {hint_run}"))
    if shape.data_files > files_limit:
        out.append(Finding("small files", f"{shape.data_files} data files, more than "
                           f"{settings.maintenance.max_files_per_bucket} per bucket: every query opens them all",
                           hint_run + ("" if schedule != "off" else "; or set maintenance.schedule")))
    if shape.delete_files > files_limit:
        out.append(Finding("delete files", f"{shape.delete_files} delete files (updated keys) await compaction",
                           hint_run))
    if shape.metadata_bytes > METADATA_WARN_BYTES:
        out.append(Finding("large metadata", f"the table's metadata is {_size(shape.metadata_bytes)} and every "
                           "tiering commit rewrites it", f"shorten lake.snapshot_retention; {hint_run}"))
    kept = duration_seconds(settings.snapshot_retention) / max(1.0, duration_seconds(settings.freshness))
    if shape.snapshots > SNAPSHOT_SLACK * kept + 100:
        out.append(Finding("snapshots pile up", f"{shape.snapshots} snapshots kept, about {kept:.0f} expected for "
                           f"{settings.snapshot_retention} of time travel at a {settings.freshness} freshness",
                           f"check that snapshot expiry runs (`sagaz-lakehouse logs lake-maintenance`); {hint_run}"))
    return out


def observe(settings: Settings, endpoints: Endpoints) -> tuple[maintenance.Shape, list[Finding]]:
    """The table's shape and findings, read through the REST catalog."""
    target = lake(settings, endpoints)
    metadata, size = target.catalog.load(target.namespace, target.table)
    shape = maintenance.shape_of(metadata, size)
    first = min((s["timestamp-ms"] for s in metadata.get("snapshots") or []), default=None)
    return shape, findings(settings, shape, first)


def _ago(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 172800 else f"{seconds / 86400:.1f} d"


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"
