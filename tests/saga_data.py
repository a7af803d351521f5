"""Synthetic saga events and their read-back through Iceberg (pyiceberg) and Trino, shared by the end-to-end suites
of every target (tests/local/stacks, tests/compose/engine). Importable as `saga_data` (tests/ is on sys.path)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest

from sagaz_lakehouse import addresses, clients, config, security
from sagaz_lakehouse.stack import View

EVENTS = 1000
TABLE = "saga_events"


def endpoints(settings: config.Settings) -> addresses.Endpoints:
    """Where a client on this host reaches the stack (loopback: local binds it, compose publishes it), with the
    external catalog's OAuth2 login where it wants one (secrets.file an absolute path)."""
    return security.with_catalog_login(addresses.endpoints(settings, View.EXTERNAL), settings)


def saga_events(batch: str, count: int = EVENTS) -> list[dict]:
    """`count` events of every kind, with nulls, lists and distinct values, all tagged saga_name = batch."""
    start = datetime(2026, 1, 1, 12, 0, 0)
    kinds = ["saga_started", "step_completed", "step_failed", "compensation_started", "saga_completed"]
    return [{
        "event_id": f"{batch}-{i:04d}", "event_type": kinds[i % len(kinds)], "saga_id": f"saga-{i // 5}",
        "saga_name": batch, "step_name": f"step-{i % 3}" if i % 5 else None, "duration_ms": i * 3,
        "total_duration_ms": i * 7, "error_type": "TimeoutError" if i % 5 == 2 else None,
        "error_message": f"step {i} timed out" if i % 5 == 2 else None,
        "context_keys": [f"k{j}" for j in range(i % 4)], "timestamp": start + timedelta(milliseconds=i),
    } for i in range(count)]


async def write_events(settings: config.Settings, rows: list[dict]) -> None:
    """Upsert the rows through pyfluss; returns once every write is acknowledged."""
    import fluss

    async with clients.fluss_connection(endpoints(settings)) as connection:
        table = await connection.get_table(fluss.TablePath(settings.lake.database, TABLE))
        writer = table.new_upsert().create_writer()
        handles = [writer.upsert(row) for row in rows]
        await writer.flush()
        for handle in handles:
            await handle.wait()


def iceberg_rows(settings: config.Settings, batch: str,
                 credentials: config.Credentials = config.DEV_CREDENTIALS) -> list[dict]:
    from pyiceberg.expressions import EqualTo

    catalog = clients.iceberg_catalog(settings, credentials, endpoints(settings))
    table = catalog.load_table(f"{settings.lake.database}.{TABLE}")
    rows, _ = clients.iceberg_read(table, EqualTo("saga_name", batch))
    return rows.to_pylist()


def wait_for_iceberg(settings: config.Settings, batch: str, expected: int, timeout: float = 240,
                     credentials: config.Credentials = config.DEV_CREDENTIALS) -> list[dict]:
    """Polls until Iceberg holds `expected` rows of the batch; fails with the count it saw."""
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = iceberg_rows(settings, batch, credentials)
        if len(rows) >= expected:
            return rows
        time.sleep(2)
    pytest.fail(f"only {len(rows)} of {expected} events reached Iceberg within {timeout}s", pytrace=False)


def trino_count(settings: config.Settings, batch: str) -> int:
    sql = f"SELECT count(*) FROM {settings.lake.database}.{TABLE} WHERE saga_name = ?"  # noqa: S608
    return clients.trino_query(endpoints(settings), sql, (batch,))[0][0]


def trino_sample(settings: config.Settings, event_id: str) -> list[tuple]:
    sql = (f"SELECT event_type, error_type, cardinality(context_keys) FROM {settings.lake.database}.{TABLE} "  # noqa: S608
           "WHERE event_id = ?")
    return clients.trino_query(endpoints(settings), sql, (event_id,))


def assert_same_content(sent: list[dict], rows: list[dict]) -> None:
    """Exactly the sent events, field by field (every column of the table's schema)."""
    from sagaz_lakehouse import tables

    assert len(rows) == len(sent), f"{len(rows)} rows for {len(sent)} events"
    by_id = {r["event_id"]: r for r in rows}
    assert len(by_id) == len(sent), "duplicate event ids in Iceberg"
    for event in sent:
        got = by_id[event["event_id"]]
        assert {k: got[k] for k in tables.arrow_schema().names} == event
