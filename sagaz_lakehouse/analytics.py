"""Run the query packs against the running stack, and print their answers (table, JSON, CSV).

``run(settings, endpoints, name, params)`` checks the parameters, renders the statement and runs it: a Trino query
through the Trino client; a Flink query through the SQL Gateway, in a session of its own that first creates the
``fluss`` catalog (``CREATE CATALOG fluss WITH ('type' = 'fluss', 'bootstrap.servers' = ...)``, with the address the
gateway's own configuration gives its sessions: the one the Flink cluster reaches Fluss at), then follows the
streaming query within its bound (``sqlgateway.Session.follow``); a query of the historical pack on Spark (``engine=
"spark"``) through a ``spark.SparkEngine`` the caller opens (``spark.engine``), from the Spark pack's own file.

Parameters named in ``SETTING_PARAMS`` take their default from the settings (the prices of ``cost_attribution``
come from ``cost.*``) unless given.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sagaz_lakehouse import clients, queries
from sagaz_lakehouse.addresses import Endpoints
from sagaz_lakehouse.components.flink import FLUSS_BOOTSTRAP_PROPERTY, FLUSS_CLIENT_PREFIX
from sagaz_lakehouse.config import Settings
from sagaz_lakehouse.errors import LakehouseError, UsageError
from sagaz_lakehouse.queries import Query, Result

if TYPE_CHECKING:
    from sagaz_lakehouse.spark import SparkEngine

FORMATS = ("table", "json", "csv")
# Query parameters whose default is a setting: parameter → the setting's value.
SETTING_PARAMS: dict[str, Callable[[Settings], str]] = {
    "price_gb_month": lambda s: s.cost.storage_gb_month,
    "price_million_events": lambda s: s.cost.million_events,
    "price_vcpu_hour": lambda s: s.cost.vcpu_hour,
}
FLUSS_CATALOG = "fluss"
# Session settings of every Flink query: a streaming read, and timestamps shown in UTC like the events themselves.
FLINK_SESSION = {"execution.runtime-mode": "streaming", "table.local-time-zone": "UTC"}


@dataclass(frozen=True)
class Prepared:
    """A query with its checked parameter values and the statement they render to: nothing has run yet."""

    query: Query
    values: dict[str, Any]
    sql: str


def prepare(settings: Settings, name: str, params: dict[str, str], now: datetime | None = None,
            engine: str | None = None) -> Prepared:
    """UsageError for an unknown name, an engine that does not run it, or a bad parameter, listing the valid ones."""
    query = queries.find(name, engine)
    if query.engine == "flink" and not settings.sql_gateway:
        raise UsageError(f"query {name} runs on the Flink SQL Gateway, which this stack does not run "
                         f"({settings.profile} profile, analytics.sql_gateway "
                         f"{settings.analytics.sql_gateway or 'unset'})",
                         "the gateway has no authentication of its own: turn it on only where a port-forward or the "
                         "host's own users guard it (--set analytics.sql_gateway=on, then `up`); the historical "
                         "pack (Trino) needs no gateway")
    declared = {p.name for p in query.params}
    defaults = {k: default(settings) for k, default in SETTING_PARAMS.items() if k in declared}
    values = query.values({**defaults, **params}, now)
    return Prepared(query, values, query.render(values, settings.lake.database))


def execute(prepared: Prepared, endpoints: Endpoints, progress: Callable[[str], None] | None = None,
            spark: SparkEngine | None = None) -> Result:
    query, values, sql = prepared.query, prepared.values, prepared.sql
    if query.engine == "flink":
        return _run_flink(query, values, sql, endpoints, progress)
    if query.engine == "spark":
        if spark is None:
            raise LakehouseError(f"query {query.name} on Spark needs a Spark session",
                                 "open one with sagaz_lakehouse.spark.engine(settings, credentials, endpoints)")
        try:
            columns, rows = spark.table(sql)
        except Exception as exc:
            if type(exc).__module__.startswith("pyspark"):
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise LakehouseError(f"Spark refused query {query.name}: {first}",
                                     "see `sagaz-lakehouse query --list` for its parameters") from None
            raise
        return Result(query.name, "spark", columns, rows, values, {"sql": sql})
    try:
        columns, rows = clients.trino_table(endpoints, sql)
    except Exception as exc:
        if type(exc).__module__.startswith("trino"):
            raise LakehouseError(f"Trino refused query {query.name}: {getattr(exc, 'message', exc)}",
                                 "see `sagaz-lakehouse query --list` for its parameters; "
                                 "`sagaz-lakehouse logs trino` for the server's side") from None
        raise
    return Result(query.name, "trino", columns, rows, values, {"sql": sql})


def run(settings: Settings, endpoints: Endpoints, name: str, params: dict[str, str],
        now: datetime | None = None, progress: Callable[[str], None] | None = None) -> Result:
    """Run one query of either pack (``prepare`` then ``execute``)."""
    return execute(prepare(settings, name, params, now), endpoints, progress)


def fluss_catalog_ddl(bootstrap_servers: str, client_options: dict[str, str] | None = None) -> str:
    options = {"type": "fluss", "bootstrap.servers": bootstrap_servers, **(client_options or {})}
    listed = ", ".join(f"'{k}' = '{v.replace(chr(39), chr(39) * 2)}'" for k, v in options.items())
    return f"CREATE CATALOG {FLUSS_CATALOG} WITH ({listed})"


def _run_flink(query: Query, values: dict[str, Any], sql: str, endpoints: Endpoints,
               progress: Callable[[str], None] | None) -> Result:
    from sagaz_lakehouse.sqlgateway import Gateway

    clients.require_reachable("Flink SQL Gateway", endpoints.flink_sql_gateway)
    with Gateway(endpoints.flink_sql_gateway).session(FLINK_SESSION) as session:
        properties = session.properties()
        bootstrap = properties.get(FLUSS_BOOTSTRAP_PROPERTY)
        if not bootstrap:
            raise LakehouseError(f"the SQL Gateway's sessions carry no {FLUSS_BOOTSTRAP_PROPERTY}",
                                 "the gateway runs with another configuration: `sagaz-lakehouse up` renders it")
        client_options = {k.removeprefix(FLUSS_CLIENT_PREFIX): v for k, v in properties.items()
                          if k.startswith(FLUSS_CLIENT_PREFIX + "client.")}
        session.execute(fluss_catalog_ddl(bootstrap, client_options))
        if progress:
            progress(f"following {query.name} on Flink for up to {values['max_seconds']}s "
                     f"(stops after {values['quiet_seconds']}s without a change)")
        stream = session.follow(sql, max_seconds=values["max_seconds"], quiet_seconds=values["quiet_seconds"],
                                job_running=lambda job: job_running(endpoints.flink_rest, job))
    rows = sort_rows(stream.columns, stream.rows, query.sort)
    notes = {"sql": sql, "stopped": stream.stopped, "changes": stream.changes, "job_id": stream.job_id,
             "seconds": stream.seconds}
    return Result(query.name, "flink", stream.columns, rows, values, notes)


def job_running(flink_rest: str, job_id: str) -> bool:
    """Every task of the job is running (its sources are reading), according to the JobManager."""
    try:
        job = clients.http_json(f"{flink_rest}/jobs/{job_id}")
    except OSError:
        return False
    vertices = job.get("vertices") or []
    return job.get("state") == "RUNNING" and bool(vertices) and all(v.get("status") == "RUNNING" for v in vertices)


def sort_rows(columns: list[str], rows: list[tuple[Any, ...]], order: tuple[str, ...]) -> list[tuple[Any, ...]]:
    """Rows ordered by ``order`` (column names, each optionally followed by ``desc``), NULLs last."""
    rows = list(rows)
    for spec in reversed(order):
        column, _, direction = spec.partition(" ")
        index = columns.index(column)
        descending = direction.strip().lower() == "desc"
        present = [r for r in rows if r[index] is not None]
        present.sort(key=lambda r: r[index], reverse=descending)
        rows = present + [r for r in rows if r[index] is None]
    return rows


# ------------------------------------------------------------------------------------------------- output


def plain(value: Any) -> Any:
    """A JSON-friendly value: timestamps as ISO text, decimals as floats."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def as_json(result: Result) -> str:
    document = {"query": result.query, "engine": result.engine,
                "params": {k: plain(v) for k, v in result.params.items()}, "columns": result.columns,
                "rows": [{k: plain(v) for k, v in record.items()} for record in result.records()],
                "notes": {k: v for k, v in result.notes.items() if k != "sql"}}
    return json.dumps(document, indent=2)


def as_csv(result: Result) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(result.columns)
    for row in result.rows:
        writer.writerow([";".join(map(str, v)) if isinstance(v, list | tuple) else
                         "" if v is None else plain(v) for v in row])
    return out.getvalue().rstrip("\n")


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):  # two decimals; three significant digits below 0.1 (costs, failure rates)
        return f"{value:.3g}" if value and abs(value) < 0.1 else f"{value:.2f}"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="milliseconds")
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def as_table(result: Result) -> str:
    cells = [[cell(v) for v in row] for row in result.rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(result.columns)]
    numeric = [all(isinstance(row[i], int | float | Decimal) or row[i] is None for row in result.rows)
               for i in range(len(result.columns))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric,
                                                                               strict=True)).rstrip()

    return "\n".join([line(result.columns), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def formatted(result: Result, fmt: str) -> str:
    if fmt not in FORMATS:
        raise UsageError(f"unknown format '{fmt}'", f"use one of: {', '.join(FORMATS)}")
    return {"table": as_table, "json": as_json, "csv": as_csv}[fmt](result)
