"""Synthetic saga events and their read-back through Iceberg (pyiceberg) and Trino, shared by the end-to-end suites
of every target (tests/local/stacks, tests/compose/engine, tests/kubernetes/kubelet). Importable as `saga_data`
(tests/ is on sys.path). Each function takes the stack's endpoints and credentials where its clients log in (prod);
without them, the dev stack's on loopback."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta

import pytest

from sagaz_lakehouse import addresses, clients, config, security
from sagaz_lakehouse.stack import View

EVENTS = 1000
TABLE = "saga_events"


def endpoints(settings: config.Settings, given: addresses.Endpoints | None = None) -> addresses.Endpoints:
    """Where a client on this host reaches the stack (loopback: local binds it, compose publishes it), with the
    external catalog's OAuth2 login where it wants one (secrets.file an absolute path)."""
    return given or security.with_catalog_login(addresses.endpoints(settings, View.EXTERNAL), settings)


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


WRITE_TIMEOUT = 300.0  # pyfluss retries a write to a bucket without a leader forever: a hang becomes a failure


async def write_events(settings: config.Settings, rows: list[dict], at: addresses.Endpoints | None = None,
                       timeout: float = WRITE_TIMEOUT) -> None:
    """Upsert the rows through pyfluss; returns once every write is acknowledged (fails after ``timeout``)."""
    import fluss

    async def write() -> None:
        async with clients.fluss_connection(endpoints(settings, at)) as connection:
            table = await connection.get_table(fluss.TablePath(settings.lake.database, TABLE))
            writer = table.new_upsert().create_writer()
            handles = [writer.upsert(row) for row in rows]
            await writer.flush()
            for handle in handles:
                await handle.wait()

    try:
        await asyncio.wait_for(write(), timeout)
    except TimeoutError:
        raise AssertionError(f"{len(rows)} upserts not acknowledged within {timeout:.0f}s") from None


def iceberg_rows(settings: config.Settings, batch: str, credentials: config.Credentials | None = None,
                 at: addresses.Endpoints | None = None) -> list[dict]:
    from pyiceberg.expressions import EqualTo

    catalog = clients.iceberg_catalog(settings, credentials or config.DEV_CREDENTIALS, endpoints(settings, at))
    table = catalog.load_table(f"{settings.lake.database}.{TABLE}")
    rows, _ = clients.iceberg_read(table, EqualTo("saga_name", batch))
    return rows.to_pylist()


def wait_for_iceberg(settings: config.Settings, batch: str, expected: int, timeout: float = 240,
                     at: addresses.Endpoints | None = None,
                     credentials: config.Credentials | None = None) -> list[dict]:
    """Polls until Iceberg holds `expected` rows of the batch; fails with the count it saw."""
    deadline = time.monotonic() + timeout
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = iceberg_rows(settings, batch, credentials, at)
        if len(rows) >= expected:
            return rows
        time.sleep(2)
    pytest.fail(f"only {len(rows)} of {expected} events reached Iceberg within {timeout}s", pytrace=False)


def trino_count(settings: config.Settings, batch: str, at: addresses.Endpoints | None = None) -> int:
    sql = f"SELECT count(*) FROM {settings.lake.database}.{TABLE} WHERE saga_name = ?"  # noqa: S608
    return clients.trino_query(endpoints(settings, at), sql, (batch,))[0][0]


def trino_sample(settings: config.Settings, event_id: str, at: addresses.Endpoints | None = None) -> list[tuple]:
    sql = (f"SELECT event_type, error_type, cardinality(context_keys) FROM {settings.lake.database}.{TABLE} "  # noqa: S608
           "WHERE event_id = ?")
    return clients.trino_query(endpoints(settings, at), sql, (event_id,))


# ------------------------------------------------------------------------------------------ refusals (prod)


async def fluss_answer(bootstrap: str, login: dict[str, str]) -> str:
    """What a pyfluss client with ``login`` gets back for listing the databases: the list, or the error."""
    import asyncio

    import fluss

    try:
        connection = await asyncio.wait_for(
            fluss.FlussConnection.create(fluss.Config({"bootstrap.servers": bootstrap, **login})), 30)
        try:
            return repr(await asyncio.wait_for(connection.get_admin().list_databases(), 30))
        finally:
            await asyncio.wait_for(connection.close(), 10)
    except Exception as exc:  # the refusal a test wants to see, whatever pyfluss raises it as
        return f"{type(exc).__name__}: {exc}"


def refusals(settings: config.Settings, at: addresses.Endpoints, credentials: config.Credentials) -> dict[str, str]:
    """What the prod stack answers each client that may not in: pyfluss without a login and with a wrong password,
    anonymous Trino over HTTPS and anything over plain HTTP, a jar upload to Flink, a call to the SQL Gateway. Each
    answer as the client saw it (status and body, or the error), for the test to check and print."""
    import asyncio

    import requests

    from sagaz_lakehouse import security

    answers = {"fluss without a login": asyncio.run(fluss_answer(at.fluss_bootstrap, {})),
               "fluss with a wrong password": asyncio.run(fluss_answer(
                   at.fluss_bootstrap, security.pyfluss_login("not-" + credentials.fluss_password)))}
    login = at.trino_login
    assert login is not None, "the prod stack's endpoints carry the Trino login"
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the stack's certificate
    session.verify = login.ca_file

    def http(what: str, method: str, url: str, **kwargs: object) -> None:
        try:
            response = session.request(method, url, timeout=30, **kwargs)  # type: ignore[arg-type]
            answers[what] = f"HTTP {response.status_code}: {response.text[:300]}"
        except requests.RequestException as exc:
            answers[what] = f"{type(exc).__name__}: {exc}"

    http("trino anonymous over https", "POST", f"{login.url}/v1/statement", data="SELECT 1",
         headers={"X-Trino-User": login.user})
    http("trino over plain http", "POST", f"{at.trino}/v1/statement", data="SELECT 1",
         headers={"X-Trino-User": login.user})
    http("flink jar upload", "POST", f"{at.flink_rest}/jars/upload", data=b"--x--\r\n",
         headers={"Content-Type": "multipart/form-data; boundary=x"})
    http("sql gateway", "POST", f"{at.flink_sql_gateway}/v1/sessions", json={})
    return answers


def assert_refused(answers: dict[str, str], database: str) -> None:
    """The refusals of ``refusals``, each with the error the server gave; printed for the record."""
    for what, answer in answers.items():
        print(f"refused, {what}: {answer}")
    for what in ("fluss without a login", "fluss with a wrong password"):
        assert database not in answers[what] and "authenticat" in answers[what].lower(), answers[what]
    assert answers["trino anonymous over https"].startswith("HTTP 401"), answers["trino anonymous over https"]
    plain = answers["trino over plain http"]
    assert plain.startswith("HTTP 403") and "Authentication over HTTP is not enabled" in plain, plain
    upload = answers["flink jar upload"]  # web.submit.enable false: no /jars handlers at all
    assert upload.startswith("HTTP 400") and "POST request not allowed" in upload, upload
    gateway = answers["sql gateway"]  # prod runs no SQL Gateway: nothing answers its port
    assert not gateway.startswith("HTTP 2") and "ConnectionError" in gateway, gateway


def assert_same_content(sent: list[dict], rows: list[dict]) -> None:
    """Exactly the sent events, field by field (every column of the table's schema)."""
    from sagaz_lakehouse import tables

    assert len(rows) == len(sent), f"{len(rows)} rows for {len(sent)} events"
    by_id = {r["event_id"]: r for r in rows}
    assert len(by_id) == len(sent), "duplicate event ids in Iceberg"
    for event in sent:
        got = by_id[event["event_id"]]
        assert {k: got[k] for k in tables.arrow_schema().names} == event
