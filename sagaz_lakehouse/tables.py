"""The saga_events table: its schema (defined once, here), its DDL, and its idempotent creation.

The design record (ADR-013) asks for ``'tiered.storage.enabled'`` / ``'tiered.storage.format'``; Fluss has no such
options. Its intent is expressed with the real ones: the cluster sets ``datalake.format: iceberg``
(components/fluss.py), and the table sets ``table.datalake.enabled`` and ``table.datalake.freshness`` (how stale
the Iceberg copy may be).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sagaz_lakehouse.addresses import Endpoints
from sagaz_lakehouse.config import Credentials, Settings
from sagaz_lakehouse.errors import LakehouseError, UsageError
from sagaz_lakehouse.fluss_cluster import LEADER_ELECTION_S, ServerLog

TABLE = "saga_events"
PRIMARY_KEY = "event_id"
INVALID_REPLICATION_FACTOR = 17  # FlussError code: more replicas than registered tablet servers (Fluss Errors.java)


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str  # Flink SQL / Fluss type
    comment: str


COLUMNS: tuple[Column, ...] = (
    Column("event_id", "STRING", "unique id of the lifecycle event"),
    Column("event_type", "STRING", "saga_started, step_completed, step_failed, compensation_started, ..."),
    Column("saga_id", "STRING", "saga instance"),
    Column("saga_name", "STRING", "saga definition"),
    Column("step_name", "STRING", "step, for step events"),
    Column("duration_ms", "BIGINT", "step duration"),
    Column("total_duration_ms", "BIGINT", "saga duration so far"),
    Column("error_type", "STRING", "exception type, for failures"),
    Column("error_message", "STRING", "exception message, for failures"),
    Column("context_keys", "ARRAY<STRING>", "keys present in the saga context"),
    Column("timestamp", "TIMESTAMP(6)", "when the event happened"),
)


def arrow_schema() -> Any:
    """The same columns as a pyarrow schema (what pyfluss takes)."""
    import pyarrow as pa

    types = {"STRING": pa.string(), "BIGINT": pa.int64(), "ARRAY<STRING>": pa.list_(pa.string()),
             "TIMESTAMP(6)": pa.timestamp("us")}
    return pa.schema([pa.field(c.name, types[c.sql_type], nullable=c.name != PRIMARY_KEY) for c in COLUMNS])


def table_properties(settings: Settings) -> dict[str, str]:
    return {
        "table.datalake.enabled": "true",
        "table.datalake.freshness": settings.freshness,
    }


# Iceberg table properties Fluss passes on when it creates the lake table (the ``iceberg.`` prefix of a custom
# property, stripped: IcebergLakeCatalog.createTable, v0.9.1-incubating). Fluss cannot change them later; lake
# maintenance sets them on tables created before (maintenance.METADATA_PROPERTIES).
def iceberg_properties(settings: Settings) -> dict[str, str]:
    """Iceberg keeps every metadata.json by default, one more per tiering commit: keep only the last few."""
    return {"iceberg.write.metadata.delete-after-commit.enabled": "true",
            "iceberg.write.metadata.previous-versions-max": str(settings.maintenance.metadata_versions)}


def creation_properties(settings: Settings) -> dict[str, str]:
    """What the table is created with: its lake properties, and the replication factor the settings ask for
    (``table.replication.factor``; the servers' default is the same, set from the same settings). The factor is not
    compared on an existing table: scaling the tablet servers raises the default, and the table keeps its own."""
    return {**table_properties(settings), "table.replication.factor": str(settings.replication_factor)}


def flink_sql_ddl(settings: Settings) -> str:
    """What create-tables does, as Flink SQL (for --dry-run and for people who use the Flink SQL client)."""
    db = settings.lake.database
    width = max(len(c.name) for c in COLUMNS) + 2
    columns = ",\n".join(f"    `{c.name}`".ljust(width + 6) + f"{c.sql_type}" + (" NOT NULL" if c.name == PRIMARY_KEY
                                                                                   else "")
                         + f" COMMENT '{c.comment}'" for c in COLUMNS)
    options = {"bucket.num": str(settings.lake.buckets), "bucket.key": PRIMARY_KEY, **creation_properties(settings)}
    with_clause = ",\n".join(f"    '{k}' = '{v}'" for k, v in options.items())
    return (f"CREATE DATABASE IF NOT EXISTS `{db}`;\n\n"
            f"CREATE TABLE IF NOT EXISTS `{db}`.`{TABLE}` (\n{columns},\n"
            f"    PRIMARY KEY (`{PRIMARY_KEY}`) NOT ENFORCED\n) WITH (\n{with_clause}\n);\n")


class SchemaConflict(UsageError):
    """The table exists with another definition; nothing was changed."""


def create_tables(settings: Settings, credentials: Credentials, endpoints: Endpoints,
                  log: Callable[[str], None] = lambda _m: None, iceberg_wait: float = 60.0,
                  server_log: ServerLog | None = None,
                  restart_coordinator: Callable[[], None] | None = None) -> dict[str, Any]:
    """Create the database and saga_events (idempotent), then wait until Iceberg shows the lake table.

    Fluss refuses a table with more replicas than registered tablet servers (error 17): then this waits, bounded,
    for the servers to register and tries once more, or names the missing servers with the coordinator's reason
    (``server_log``: a Fluss server's log tail by instance name, from the target).

    A table whose buckets get no leader (the coordinator missed its creation, apache/fluss#2710) is repaired once by
    ``restart_coordinator`` (from the target): a coordinator that starts reads every table and elects their
    leaders. Without it, or when the restarted coordinator elects none either, the error names the table."""
    try:
        result = _create_when_tablets_registered(settings, endpoints, log, server_log)
    except LeadersNotElected as missed:
        if restart_coordinator is None:
            raise
        log(f"{missed.table}: the coordinator missed the table's creation (apache/fluss#2710, "
            "fixed after 0.9.1); restarting the coordinator, which elects the leaders of every table it finds")
        restart_coordinator()
        # The target's restart returns once the process answers on its port; the coordinator may still answer
        # every request with "CoordinatorEventProcessor is not initialized yet" (seen in CI).
        _wait_for_members(settings, endpoints, log, server_log,
                          f"the restarted Fluss coordinator cannot serve {settings.lake.database}.{TABLE}")
        result = asyncio.run(_create_in_fluss(settings, endpoints, log))
        result.update(created=missed.created, coordinator_restarted=True)
    result["iceberg_table"] = wait_for_iceberg_table(settings, credentials, endpoints, iceberg_wait, log)
    return result


def _wait_for_members(settings: Settings, endpoints: Endpoints, log: Callable[[str], None],
                      server_log: ServerLog | None, purpose: str) -> None:
    """Until the coordinator serves and lists as many tablet servers as the table has replicas."""
    from sagaz_lakehouse import fluss_cluster

    fluss_cluster.wait_for_tablets(settings, endpoints, need=settings.replication_factor, server_log=server_log,
                                   progress=log, purpose=purpose)


def _create_when_tablets_registered(settings: Settings, endpoints: Endpoints, log: Callable[[str], None],
                                    server_log: ServerLog | None) -> dict[str, Any]:
    try:
        return asyncio.run(_create_in_fluss(settings, endpoints, log))
    except Exception as exc:
        if getattr(exc, "error_code", None) != INVALID_REPLICATION_FACTOR:
            raise
        _wait_for_members(settings, endpoints, log, server_log,
                          f"cannot create {settings.lake.database}.{TABLE} with {settings.replication_factor} "
                          "replicas (durability.replication_factor)")
        return asyncio.run(_create_in_fluss(settings, endpoints, log))


async def _create_in_fluss(settings: Settings, endpoints: Endpoints, log: Callable[[str], None]) -> dict[str, Any]:
    import fluss

    from sagaz_lakehouse.clients import fluss_connection

    db = settings.lake.database
    path = fluss.TablePath(db, TABLE)
    wanted = fluss.Schema(arrow_schema(), primary_keys=[PRIMARY_KEY])
    async with fluss_connection(endpoints) as connection:
        admin = connection.get_admin()
        await admin.create_database(db, ignore_if_exists=True)
        if await admin.table_exists(path):
            info = await admin.get_table_info(path)
            _check_same_definition(settings, info, wanted)
            await wait_for_leaders(admin, path, info.num_buckets, log, created=False)
            log(f"table {db}.{TABLE} already exists with the same definition; nothing to do")
            return {"database": db, "table": TABLE, "created": False}
        descriptor = fluss.TableDescriptor(wanted, bucket_count=settings.lake.buckets, bucket_keys=[PRIMARY_KEY],
                                           properties=creation_properties(settings),
                                           custom_properties=iceberg_properties(settings))
        await admin.create_table(path, descriptor, ignore_if_exists=False)
        await wait_for_leaders(admin, path, settings.lake.buckets, log, created=True)
        log(f"created {db}.{TABLE} ({settings.lake.buckets} buckets, lake tiering every {settings.freshness})")
        return {"database": db, "table": TABLE, "created": True}


class LeadersNotElected(LakehouseError):
    """The coordinator elected no leader for a table's buckets in time; ``created``: by this call."""

    def __init__(self, message: str, hint: str, created: bool, table: str = TABLE) -> None:
        super().__init__(message, hint)
        self.created = created
        self.table = table


async def wait_for_leaders(admin: Any, path: Any, buckets: int, log: Callable[[str], None], *, created: bool,
                           timeout: float = LEADER_ELECTION_S, pause: float = 1.0) -> None:
    """Until every bucket answers its latest offset (which only its leader does). A table whose buckets never get a
    leader takes no write: seen once in CI with Fluss 0.9.1, where the coordinator registered the table's
    assignment but never acted on the new table, and a writer then retried forever. The cause is upstream's
    apache/fluss#2710 (fixed after 0.9.1): the coordinator learns of a new table from a ZooKeeper cache event that,
    under load, arrives as "created with data" instead of "changed", which 0.9.1's TableChangeWatcher ignores. A
    coordinator that starts reads every table and elects their leaders, hence the hint."""
    import fluss

    deadline = time.monotonic() + timeout
    announced = False
    while True:
        try:
            await admin.list_offsets(path, list(range(buckets)), fluss.OffsetSpec.latest())
            return
        except Exception as exc:  # right after creation every kind is seen for a moment: no leader yet, "Unknown
            # table or bucket" (the server has no metadata yet), "not leader or follower" (a leader moving)
            if time.monotonic() >= deadline:
                raise LeadersNotElected(
                    f"{path}: the Fluss coordinator elected no leader for the table's buckets within {timeout:.0f}s "
                    f"({str(exc)[:200]}); nothing can be written to it",
                    "restart Fluss (`sagaz-lakehouse down`, then `up`: the data is kept; the coordinator elects the "
                    "leaders of every table it finds when it starts), then run create-tables again; see "
                    "`sagaz-lakehouse logs fluss-coordinator`", created, str(path)) from None
            if not announced:
                announced = True
                log(f"waiting for the Fluss coordinator to elect the leaders of {path}'s buckets")
            await asyncio.sleep(pause)


def column_plan(have: list[tuple[str, str]], want: list[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """How the table's columns would have to change: (additive steps, destructive steps). Additive is a nullable
    column appended after the existing ones, the one schema change Fluss accepts (SchemaUpdate, v0.9.1-incubating);
    anything else (a column dropped, retyped, renamed, moved, or added NOT NULL) is destructive."""
    have, want = [(c[0], c[1]) for c in have], [(c[0], c[1]) for c in want]
    additive: list[str] = []
    destructive: list[str] = []
    if want[:len(have)] == have:
        for name, kind in want[len(have):]:
            step = f"add column {name} {kind}"
            (destructive if "NOT NULL" in kind.upper() else additive).append(step)
        return additive, destructive
    wanted = dict(want)
    for name, kind in have:
        if name not in wanted:
            destructive.append(f"drop column {name} {kind}")
        elif wanted[name] != kind:
            destructive.append(f"change column {name} from {kind} to {wanted[name]}")
    known = {name for name, _ in have}
    additive += [f"add column {name} {kind}" for name, kind in want if name not in known]
    if not destructive:
        destructive.append("reorder columns to " + ", ".join(name for name, _ in want))
    return additive, destructive


# Fluss 0.9.1 accepts ADD COLUMN on the Fluss table, applies it to the lake table first, and the Iceberg lake catalog
# takes option changes only: IcebergLakeCatalog.alterTable throws "Unsupported table change" (apache/fluss#2592,
# fixed by PR #2593 after 0.9.1). Changing the Iceberg table through another engine is what the Fluss docs forbid.
ADD_COLUMN_UNSUPPORTED = ("Fluss 0.9.1 cannot add a column to a table tiered to Iceberg (its Iceberg lake catalog "
                          "accepts option changes only: apache/fluss#2592, fixed after 0.9.1), and the lake table "
                          "must not be changed through another engine")


class SchemaChangeRefused(SchemaConflict):
    """The table's columns differ from the wanted ones; the plan is in the message, nothing was changed."""


def _check_columns(settings: Settings, have: list[tuple[str, str]], want: list[tuple[str, str]]) -> None:
    additive, destructive = column_plan(have, want)
    if not additive and not destructive:
        return
    name = f"{settings.lake.database}.{TABLE}"
    plan = "\n".join(f"    {'(destructive) ' if step in destructive else ''}{step}" for step in destructive + additive)
    if destructive:
        raise SchemaChangeRefused(
            f"{name} exists with other columns; making it match would need:\n{plan}\n  a destructive change is "
            "never applied: it would lose or rewrite rows that Iceberg and Trino keep",
            "nothing was changed. Keep the table as it is, or create the new definition under another "
            "lake.database and move the data deliberately")
    raise SchemaChangeRefused(
        f"{name} exists without the new column(s); the additive plan is:\n{plan}\n  it cannot be applied: "
        f"{ADD_COLUMN_UNSUPPORTED}",
        "nothing was changed. New tables get every column at creation (another lake.database); an existing "
        "table gets new columns once the stack runs a Fluss release with Iceberg schema evolution (README, "
        "Operations: schema changes)")


def _check_same_definition(settings: Settings, info: Any, wanted: Any) -> None:
    _check_columns(settings, info.get_schema().get_columns(), wanted.get_columns())
    differences = []
    if info.get_primary_keys() != [PRIMARY_KEY]:
        differences.append(f"primary key is {info.get_primary_keys()}, expected ['{PRIMARY_KEY}']")
    if info.num_buckets != settings.lake.buckets:
        differences.append(f"bucket count is {info.num_buckets}, expected {settings.lake.buckets}")
    properties = info.get_properties()
    for key, value in table_properties(settings).items():
        if properties.get(key) != value:
            differences.append(f"{key} is {properties.get(key)!r}, expected {value!r}")
    if differences:
        raise SchemaConflict(
            f"{settings.lake.database}.{TABLE} exists with a different definition: " + "; ".join(differences),
            "nothing was changed. Keep the existing table (adjust lake.* settings to match it), or drop it "
            "deliberately and run create-tables again",
        )


def wait_for_iceberg_table(settings: Settings, credentials: Credentials, endpoints: Endpoints, timeout: float,
                           log: Callable[[str], None]) -> str:
    """The coordinator creates the Iceberg table when the Fluss table is created; confirm it is visible."""
    from sagaz_lakehouse.clients import iceberg_catalog

    catalog = iceberg_catalog(settings, credentials, endpoints)
    identifier = f"{settings.lake.database}.{TABLE}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            catalog.load_table(identifier)
            log(f"Iceberg table {identifier} is visible through the REST catalog")
            return identifier
        except Exception as exc:  # pyiceberg raises NoSuchTableError, or connection errors while starting
            if time.monotonic() > deadline:
                raise LakehouseError(f"Iceberg table {identifier} did not appear in the REST catalog "
                                     f"within {timeout:.0f}s ({exc})",
                                     "check the coordinator log: `sagaz-lakehouse logs fluss-coordinator`") from exc
            time.sleep(1)
