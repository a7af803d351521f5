"""FlussAnalyticsListener end to end: real Sagaz sagas → pyfluss → Fluss → tiering → Iceberg → Trino.

The module starts its own local stack on ports of its own (so it never meets a stack on the default ports), creates
the tables, and removes everything at the end (`down --purge`). A stack that does not start fails the fixture with
the CLI's output, which carries the failing component's log tail.

The stack runs the prod profile, with its credentials in a 0600 secrets file (freshness, tiering poll and KV
snapshots set back to dev's, so the waits stay short): Fluss takes SASL/PLAIN clients only and Trino takes
password-authenticated clients over HTTPS only, so every test here also shows that the listener, `create-tables`
and `doctor` log in, that a client without the login or with a wrong password is refused by both, and that no log
of the run holds a secret. Flink takes no jar uploads there: the tiering job goes in through Flink's own client.
Each role reaches the object store with its own MinIO identity, refused outside its grant; only MinIO holds the
root keys.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from saga_data import fluss_answer
from sagaz import Saga, action, compensate
from support import SuiteStack, cli, debian_program, init_with_ports, log_files, must, suite_ports

from sagaz_lakehouse import addresses, clients, config, identities, security, versions
from sagaz_lakehouse.saga_events import EventBuilder, SagaEvent
from sagaz_lakehouse.sagaz import FlussAnalyticsListener
from sagaz_lakehouse.targets.local import watchdog
from sagaz_lakehouse.targets.local.supervisor import Supervisor

PORTS = suite_ports("listener")
TIERING_WAIT = 240  # s: freshness 10 s in dev, plus tiering rounds on a busy 2-core machine
COLUMNS = ("event_id", "event_type", "saga_id", "saga_name", "step_name", "duration_ms", "total_duration_ms",
           "error_type", "error_message", "context_keys", "timestamp")


# ------------------------------------------------------------------------------------------ the stack


class Stack(SuiteStack):
    """The prod stack of this module (settings, credentials and endpoints with the logins: RunningStack)."""

    def listener(self, **options: Any) -> FlussAnalyticsListener:
        return FlussAnalyticsListener(self.endpoints.fluss_bootstrap, database=self.database,
                                      fluss_properties=self.endpoints.fluss_login, **options)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    debian_program("postgresql.sh", versions.POSTGRES_MAJOR)  # the prod catalog's database (Debian's package)
    workdir = tmp_path_factory.mktemp("sagaz-listener-stack")
    settings_file = init_with_ports(workdir, PORTS)
    secrets_file = workdir / "secrets.yaml"
    secrets_file.touch(mode=0o600)
    secrets_file.write_text(yaml.safe_dump({"s3_access_key": "listener-e2e", "s3_secret_key": secrets.token_hex(16),
                                            "fluss_password": secrets.token_hex(16),
                                            "trino_password": secrets.token_hex(16)}))
    values = yaml.safe_load(settings_file.read_text())
    # analytics.sql_gateway: prod runs no SQL Gateway unless asked for (it has no authentication of its own); this
    # module asks, to show its Fluss catalog logging in (test_a_flink_query_reads_fluss_through_the_catalogs_login)
    values.update(profile="prod", secrets={"file": secrets_file.name}, analytics={"sql_gateway": "on"},
                  lake={"freshness": "10s", "tiering_poll": "2s", "kv_snapshot_interval": "5s"})
    settings_file.write_text(yaml.safe_dump(values))
    stack = Stack(workdir)
    try:
        stack.must("up")
        stack.must("create-tables")
        yield stack
    finally:
        stack.down()


# ------------------------------------------------------------------------------------------ sagas under test

ORDER_STEP_MS = {"reserve": 30, "charge": 40, "ship": 20}
ORDER_UNDO_MS = {"reserve": 15, "charge": 25}
DAG_STEP_MS = {"validate": 10, "pick": 30, "pack": 50, "label": 10, "confirm": 5}
DAG_UNDO_MS = {"pack": 20}


def order_saga(listener: FlussAnalyticsListener, fail_at: str | None = None) -> Saga:
    async def work(step: str, result: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(ORDER_STEP_MS[step] / 1000)
        if step == fail_at:
            raise RuntimeError(f"{step} refused")
        return result

    class E2EOrder(Saga):
        saga_name = "e2e_order"
        listeners = [listener]  # noqa: RUF012 - Sagaz reads this class attribute

        @action("reserve")
        async def reserve(self, ctx: dict) -> dict:
            return await work("reserve", {"reservation": "r-1"})

        @compensate("reserve")
        async def release(self, ctx: dict) -> None:
            await asyncio.sleep(ORDER_UNDO_MS["reserve"] / 1000)

        @action("charge", depends_on=["reserve"])
        async def charge(self, ctx: dict) -> dict:
            return await work("charge", {"payment": "p-1"})

        @compensate("charge")
        async def refund(self, ctx: dict) -> None:
            await asyncio.sleep(ORDER_UNDO_MS["charge"] / 1000)

        @action("ship", depends_on=["charge"])
        async def ship(self, ctx: dict) -> dict:
            return await work("ship", {"shipment": "s-1"})

    return E2EOrder()


def dag_saga(listener: FlussAnalyticsListener) -> Saga:
    """validate → (pick ‖ pack ‖ label) → confirm, which fails; undoing pick raises."""

    async def work(step: str, result: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(DAG_STEP_MS[step] / 1000)
        return result

    class E2EDag(Saga):
        saga_name = "e2e_dag"
        listeners = [listener]  # noqa: RUF012

        @action("validate")
        async def validate(self, ctx: dict) -> dict:
            return await work("validate", {"valid": True})

        @action("pick", depends_on=["validate"])
        async def pick(self, ctx: dict) -> dict:
            return await work("pick", {"picked": 3})

        @compensate("pick")
        async def unpick(self, ctx: dict) -> None:
            raise RuntimeError("cannot undo pick")

        @action("pack", depends_on=["validate"])
        async def pack(self, ctx: dict) -> dict:
            return await work("pack", {"parcel": "x-1"})

        @compensate("pack")
        async def unpack(self, ctx: dict) -> None:
            await asyncio.sleep(DAG_UNDO_MS["pack"] / 1000)

        @action("label", depends_on=["validate"])
        async def label(self, ctx: dict) -> dict:
            return await work("label", {"label": "l-1"})

        @compensate("label")
        async def void_label(self, ctx: dict) -> None:
            pass

        @action("confirm", depends_on=["pick", "pack", "label"])
        async def confirm(self, ctx: dict) -> dict:
            await work("confirm", {})
            raise ValueError("confirmation rejected")

    return E2EDag()


# ------------------------------------------------------------------------------------------ reading back


def trino_rows(stack: Stack, saga_ids: list[str]) -> list[dict[str, Any]]:
    marks = ", ".join("?" for _ in saga_ids)
    columns = ", ".join(f'"{c}"' for c in COLUMNS)  # "timestamp" is a reserved word
    table = f"{stack.database}.saga_events"  # our own settings; the values are bound as parameters
    sql = f'SELECT {columns} FROM {table} WHERE saga_id IN ({marks}) ORDER BY saga_id, "timestamp"'  # noqa: S608
    found = clients.trino_query(stack.endpoints, sql, tuple(saga_ids))
    return [dict(zip(COLUMNS, values, strict=True)) for values in found]


def wait_for_trino(stack: Stack, saga_ids: list[str], expected: int) -> list[dict[str, Any]]:
    """Poll Trino until the sagas' rows have been tiered; more rows than expected fails at once (a duplicate)."""
    deadline = time.monotonic() + TIERING_WAIT
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = trino_rows(stack, saga_ids)
        if len(rows) >= expected:
            break
        time.sleep(2)
    if len(rows) != expected:
        pytest.fail(f"Trino has {len(rows)} rows for {len(saga_ids)} sagas, expected {expected} (waited up to "
                    f"{TIERING_WAIT}s)\n{stack.log_tails('fluss-tablet-0', 'flink-taskmanager-0')}", pytrace=False)
    return rows


def by_saga(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: r["timestamp"]):
        grouped.setdefault(row["saga_id"], []).append(row)
    return grouped


def kinds(rows: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(r["event_type"], r["step_name"]) for r in rows]


def row(rows: list[dict[str, Any]], event_type: str, step: str | None = None) -> dict[str, Any]:
    [found] = [r for r in rows if r["event_type"] == event_type and r["step_name"] == step]
    return found


def started_before_ended(rows: list[dict[str, Any]], start: str, end: str) -> bool:
    order = kinds(rows)
    return all(order.index((start, step)) < order.index((end, step)) for kind, step in order if kind == end)


async def lookup(stack: Stack, event_ids: list[str]) -> dict[str, dict[str, Any] | None]:
    import fluss

    async with clients.fluss_connection(stack.endpoints) as connection:
        table = await connection.get_table(fluss.TablePath(stack.database, "saga_events"))
        lookuper = table.new_lookup().create_lookuper()
        return {event_id: await lookuper.lookup({"event_id": event_id}) for event_id in event_ids}


HOOKS = ("saga_started", "step_started", "step_completed", "step_failed", "compensation_started",
         "compensation_completed", "saga_completed", "saga_failed")  # EventBuilder's, each returning what it built


class RecordingBuilder(EventBuilder):
    """Keeps every event it builds (what each hook returns), so a test knows exactly which rows must arrive."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[SagaEvent] = []


def recording(hook: str) -> Any:
    def record(self: RecordingBuilder, *args: Any) -> Any:
        built = getattr(EventBuilder, hook)(self, *args)
        self.events.extend(built if isinstance(built, list) else [built])
        return built

    return record


for _hook in HOOKS:
    setattr(RecordingBuilder, _hook, recording(_hook))


# ------------------------------------------------------------------------------------------ tests


def test_known_sagas_give_exactly_the_expected_rows_in_trino(stack: Stack, tmp_path: Path) -> None:
    """Through a listener with a spool, as recommended in prod: its probe logs in too (high watermarks, lake
    snapshot, tablet servers), and it deletes its segment files once the lake holds the events."""
    run = uuid.uuid4().hex[:8]
    ok, failed, dag = f"{run}-order-ok", f"{run}-order-failed", f"{run}-dag"
    began = datetime.now(UTC).replace(tzinfo=None)
    spool = tmp_path / "spool"

    async def main() -> tuple[FlussAnalyticsListener, bool]:
        async with stack.listener(spool_dir=spool) as listener:
            await order_saga(listener).run({"order_id": 1}, saga_id=ok)
            with pytest.raises(RuntimeError, match="ship refused"):
                await order_saga(listener, fail_at="ship").run({"order_id": 2}, saga_id=failed)
            with pytest.raises(ValueError, match="confirmation rejected"):
                await dag_saga(listener).run({"order_id": 3}, saga_id=dag)
            safe = await listener.wait_safe(TIERING_WAIT)  # about a tiering round: the Trino wait below is short
        return listener, safe

    listener, safe = asyncio.run(main())
    stats = listener.stats
    ended = datetime.now(UTC).replace(tzinfo=None)
    assert stats.enqueued == stats.written == stats.spooled == 38 and stats.dropped == stats.pending == 0
    assert stats.hook_errors == stats.replayed == 0
    assert safe and stats.safe == 38 and stats.unsafe == 0, stats
    assert sorted(p.name for p in spool.iterdir()) == ["spool.lock"]  # every segment deleted

    sagas = by_saga(wait_for_trino(stack, [ok, failed, dag], 38))
    every = [r for rows in sagas.values() for r in rows]
    assert len({r["event_id"] for r in every}) == 38
    assert all(began <= r["timestamp"] <= ended for r in every)
    assert all(not k.startswith("__") for r in every for k in r["context_keys"])

    # 1. success
    rows = sagas[ok]
    assert kinds(rows) == [("saga_started", None), ("step_started", "reserve"), ("step_completed", "reserve"),
                           ("step_started", "charge"), ("step_completed", "charge"), ("step_started", "ship"),
                           ("step_completed", "ship"), ("saga_completed", None)]
    for step, ms in ORDER_STEP_MS.items():
        assert row(rows, "step_completed", step)["duration_ms"] >= ms
    assert row(rows, "saga_completed")["total_duration_ms"] >= sum(ORDER_STEP_MS.values())
    assert row(rows, "saga_started")["context_keys"] == ["order_id", "saga_id"]
    assert row(rows, "saga_completed")["context_keys"] == ["order_id", "payment", "reservation", "saga_id",
                                                           "shipment"]
    assert {r["saga_name"] for r in rows} == {"e2e_order"}
    assert all(r["error_type"] is None and r["error_message"] is None for r in rows)
    assert all(r["duration_ms"] is None for r in rows if r["event_type"] in ("saga_started", "step_started"))

    # 2. failure with compensation, in reverse order
    rows = sagas[failed]
    assert kinds(rows) == [("saga_started", None), ("step_started", "reserve"), ("step_completed", "reserve"),
                           ("step_started", "charge"), ("step_completed", "charge"), ("step_started", "ship"),
                           ("step_failed", "ship"), ("compensation_started", "charge"),
                           ("compensation_completed", "charge"), ("compensation_started", "reserve"),
                           ("compensation_completed", "reserve"), ("saga_failed", None)]
    ship = row(rows, "step_failed", "ship")
    assert (ship["error_type"], ship["error_message"]) == ("RuntimeError", "ship refused")
    assert ship["duration_ms"] >= ORDER_STEP_MS["ship"]
    for step, ms in ORDER_UNDO_MS.items():
        assert row(rows, "compensation_completed", step)["duration_ms"] >= ms
    end = row(rows, "saga_failed")
    assert (end["error_type"], end["error_message"]) == ("RuntimeError", "ship refused")
    assert end["total_duration_ms"] >= sum(ORDER_STEP_MS.values()) + sum(ORDER_UNDO_MS.values())

    # 3. DAG: a concurrent level, a failing last step, a compensation that raises
    rows = sagas[dag]
    order = kinds(rows)
    level = {"pick", "pack", "label"}
    assert order[:3] == [("saga_started", None), ("step_started", "validate"), ("step_completed", "validate")]
    assert set(order[3:9]) == {(kind, s) for kind in ("step_started", "step_completed") for s in level}
    assert started_before_ended(rows[3:9], "step_started", "step_completed")
    assert order[9:11] == [("step_started", "confirm"), ("step_failed", "confirm")]
    assert set(order[11:16]) == {*(("compensation_started", s) for s in level),
                                 ("compensation_completed", "pack"), ("compensation_completed", "label")}
    assert started_before_ended(rows[11:16], "compensation_started", "compensation_completed")
    assert order[16:] == [("compensation_failed", "pick"), ("saga_failed", None)]
    for step in ("validate", *level):
        assert row(rows, "step_completed", step)["duration_ms"] >= DAG_STEP_MS[step]
    assert row(rows, "compensation_completed", "pack")["duration_ms"] >= DAG_UNDO_MS["pack"]
    undo = row(rows, "compensation_failed", "pick")
    assert (undo["error_type"], undo["error_message"], undo["duration_ms"]) == (None, "cannot undo pick", None)
    confirm = row(rows, "step_failed", "confirm")
    assert (confirm["error_type"], confirm["error_message"]) == ("ValueError", "confirmation rejected")
    slowest_path = DAG_STEP_MS["validate"] + DAG_STEP_MS["pack"] + DAG_STEP_MS["confirm"] + DAG_UNDO_MS["pack"]
    assert row(rows, "saga_failed")["total_duration_ms"] >= slowest_path


def stop_fluss(stack: Stack) -> list[str]:
    """Stop this stack's coordinator and tablet server (by their pid files: only processes this stack started).
    The watchdog goes first: it would restart them within seconds, while the test wants Fluss to stay down until
    its `up` (seen once: the coordinator answered again before the tablet server had stopped)."""
    watchdog.stop(stack.run_dir)
    supervisor = Supervisor(stack.run_dir)
    return [name for name in ("fluss-coordinator", "fluss-tablet-0") if supervisor.stop(name, grace=30)]


def test_doctor_logs_in_and_proves_tiering(stack: Stack) -> None:
    """Before the outage test: after a coordinator restart, tiering may wait out the interrupted round."""
    result = must(cli(stack.workdir, "doctor", "--json"), "doctor --json")
    assert '"ok": true' in result.stdout


def test_the_prod_catalog_keeps_its_tables_in_postgresql_and_survives_its_kill(stack: Stack) -> None:
    """Prod on the local target: the catalog's tables are in Debian's PostgreSQL (catalog-db), reached with the
    password from the catalog's 0600 pgpass file, and no sqlite file exists. The catalog's chaos row, kill -9 of its
    database: the watchdog restarts it and a tiering round commits again afterwards (no lost event)."""
    import subprocess

    assert stack.status().get("catalog-db") == "healthy"
    assert not list(stack.run_dir.rglob("catalog.db*")), "a sqlite catalog in a prod stack"
    pgpass = stack.run_dir / "config" / "rest-catalog" / "pgpass"
    assert pgpass.stat().st_mode & 0o077 == 0
    password = stack.credentials.catalog_db_password()

    def tables() -> list[str]:
        query = subprocess.run([f"{versions.POSTGRES_BIN_DIR}/psql", "-h", "127.0.0.1", "-p",
                                str(stack.settings.ports.catalog_db), "-U", "iceberg", "-d", "iceberg_catalog", "-Atc",
                                "SELECT table_namespace || '.' || table_name FROM iceberg_tables"],
                               env={**os.environ, "PGPASSWORD": password}, capture_output=True, text=True, timeout=30)
        return query.stdout.split()

    assert f"{stack.database}.saga_events" in tables()
    pid = int((stack.run_dir / "pids" / "catalog-db.pid").read_text())
    os.kill(pid, 9)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (stack.status().get("catalog-db") != "healthy" or
                                           int((stack.run_dir / "pids" / "catalog-db.pid").read_text()) == pid):
        time.sleep(2)
    assert f"{stack.database}.saga_events" in tables()
    result = must(cli(stack.workdir, "doctor", "--json"), "doctor --json after the database's kill")
    assert '"ok": true' in result.stdout  # its probe event went through a new tiering commit


def test_a_flink_query_reads_fluss_through_the_catalogs_login(stack: Stack) -> None:
    """The real-time pack on the prod stack: the SQL Gateway's `fluss` catalog carries client.security.* and the
    Flink JVMs log in from their JAAS files. The sagas of the first test ran their steps within the window."""
    result = must(cli(stack.workdir, "query", "step_latency_live", "--format", "json", "--param", "since=2h",
                      "--param", "quiet_seconds=8", "--param", "max_seconds=150"), "query step_latency_live")
    rows = json.loads(result.stdout)["rows"]
    assert {(r["saga_name"], r["step_name"]) for r in rows} >= {("e2e_order", step) for step in ORDER_STEP_MS}, rows


def test_sagas_run_through_a_fluss_outage_and_every_buffered_event_arrives_once(stack: Stack) -> None:
    run = uuid.uuid4().hex[:8]
    builder = RecordingBuilder()

    async def sagas(listener: FlussAnalyticsListener, phase: str, count: int, per_second: float) -> list[dict]:
        async def one(i: int) -> dict:
            await asyncio.sleep(i / per_second)
            return await order_saga(listener).run({"order_id": i}, saga_id=f"{run}-{phase}-{i:03d}")

        return await asyncio.gather(*(one(i) for i in range(count)))

    async def main() -> dict[str, Any]:
        seen: dict[str, Any] = {}
        listener = stack.listener(builder=builder, write_timeout=2, backoff_max=1, flush_interval=0.05)
        async with listener:
            results = await sagas(listener, "before", 10, per_second=50)
            assert await listener.flush(timeout=60)
            # Fluss goes down while sagas are running, stays down for a whole batch of sagas, comes back.
            during = asyncio.create_task(sagas(listener, "during", 60, per_second=10))
            seen["stopped"] = await asyncio.to_thread(stop_fluss, stack)
            seen["reachable_when_down"] = clients.tcp_open(stack.endpoints.fluss_bootstrap, timeout=1)
            results += await during
            results += await sagas(listener, "down", 20, per_second=50)
            deadline = time.monotonic() + 60
            while listener.stats.write_failures == 0 and time.monotonic() < deadline:  # a flush has to time out
                await asyncio.sleep(0.2)
            seen["down_stats"] = listener.stats
            seen["up"] = await asyncio.to_thread(cli, stack.workdir, "up")
            seen["delivered"] = await listener.flush(timeout=180)
        seen["results"], seen["stats"] = results, listener.stats
        return seen

    seen = asyncio.run(main())
    must(seen["up"], "up (restarting Fluss)")
    assert seen["stopped"] == ["fluss-coordinator", "fluss-tablet-0"] and not seen["reachable_when_down"]
    # the sagas did not notice
    assert len(seen["results"]) == 90 and all(r["shipment"] == "s-1" for r in seen["results"])
    down = seen["down_stats"]
    assert down.write_failures > 0 and down.pending > 0 and down.dropped == 0  # the outage was real and buffered
    stats = seen["stats"]
    assert seen["delivered"], f"buffered events not delivered after the restart: {stats}"
    assert stats.enqueued == stats.written == len(builder.events) == 90 * 8
    assert stats.dropped == stats.pending == 0

    # every event is in Fluss, as built
    ids = [e.event_id for e in builder.events]
    assert len(set(ids)) == len(ids)
    found = asyncio.run(lookup(stack, ids))
    missing = [i for i, got in found.items() if got is None]
    assert not missing, f"{len(missing)} of {len(ids)} events missing in Fluss"
    for event in builder.events:
        assert found[event.event_id]["event_type"] == event.event_type
    # ...and in Trino, exactly once per event
    saga_ids = sorted({e.saga_id for e in builder.events})
    rows = wait_for_trino(stack, saga_ids, len(ids))
    assert sorted(r["event_id"] for r in rows) == sorted(ids)


def test_an_exception_inside_the_listener_never_reaches_the_saga(stack: Stack) -> None:
    saga_id = f"{uuid.uuid4().hex[:8]}-broken-listener"

    class BrokenBuilder(RecordingBuilder):
        def step_completed(self, saga_name: str, step_name: str, ctx: Any) -> SagaEvent:
            if step_name == "charge":
                raise KeyError("a bug in the listener")
            return super().step_completed(saga_name, step_name, ctx)

        def saga_started(self, saga_name: str, saga_id: str, ctx: Any) -> SagaEvent:
            # a row pyfluss cannot convert: it must be dropped alone, not block the batch forever
            return super().saga_started(saga_name, saga_id, ctx)._replace(duration_ms="not a number")

    def broken_metrics(counter: str, n: int) -> None:
        raise RuntimeError("metrics backend down")

    builder = BrokenBuilder()

    async def main() -> tuple[dict, FlussAnalyticsListener]:
        async with stack.listener(builder=builder, stats_hook=broken_metrics) as listener:
            result = await order_saga(listener).run({"order_id": 1}, saga_id=saga_id)
        return result, listener

    result, listener = asyncio.run(main())
    assert result["shipment"] == "s-1"
    stats = listener.stats
    assert stats.hook_errors == 1 and stats.dropped == 1 and stats.enqueued == 7 and stats.written == 6
    found = asyncio.run(lookup(stack, [e.event_id for e in builder.events]))
    arrived = sorted((row["event_type"], row["step_name"] or "") for row in found.values() if row is not None)
    assert arrived == sorted([("step_started", "reserve"), ("step_completed", "reserve"), ("step_started", "charge"),
                              ("step_started", "ship"), ("step_completed", "ship"), ("saga_completed", "")])


# ------------------------------------------------------------------------------------------ the prod login


@pytest.mark.parametrize("login", ["none", "wrong password"])
def test_fluss_refuses_a_client_without_the_login(stack: Stack, login: str) -> None:
    bootstrap = stack.endpoints.fluss_bootstrap
    assert stack.database in asyncio.run(fluss_answer(bootstrap, dict(stack.endpoints.fluss_login)))
    attempt = {} if login == "none" else security.pyfluss_login("not-" + stack.credentials.fluss_password)
    answer = asyncio.run(fluss_answer(bootstrap, attempt))
    assert stack.database not in answer and "authenticat" in answer.lower(), answer


def test_no_log_file_holds_a_secret(stack: Stack) -> None:
    """Every component's log of the prod run, and the watchdog's: neither the S3 secret key, the Fluss and Trino
    passwords nor Trino's shared secret appears in any (the files that hold them are config, mode 0600)."""
    run_dir = stack.workdir / ".sagaz-lakehouse"
    logs = log_files(run_dir)
    assert len(logs) >= 8, f"expected a log per component, found {sorted(map(str, logs))}"
    values = stack.credentials.secret_values()
    # the root S3 secret, the three roles' S3 secrets, two passwords, Trino's shared secret, the catalog database's
    assert len(values) == 8
    leaks = [str(p) for p in logs for value in values if value in p.read_text(errors="replace")]
    assert leaks == []
    jaas = sorted(run_dir.rglob(security.JAAS_FILE))
    assert len(jaas) >= 5 and all(os.stat(p).st_mode & 0o077 == 0 for p in jaas), jaas


def test_trino_refuses_a_client_without_the_password(stack: Stack) -> None:
    """Plain HTTP is refused whoever asks; over HTTPS (the stack's own certificate) a missing or wrong password is
    refused, the right one answers; Prometheus scrapes Trino with the login too."""
    import requests

    login = stack.endpoints.trino_login
    assert login is not None and login.url.startswith("https://")
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the stack's certificate
    session.verify = login.ca_file
    plain = session.post(f"{stack.endpoints.trino}/v1/statement", data="SELECT 1", headers={"X-Trino-User": "sagaz"})
    assert plain.status_code == 403 and "Authentication over HTTP is not enabled" in plain.text, plain.text
    anonymous = session.post(f"{login.url}/v1/statement", data="SELECT 1", headers={"X-Trino-User": login.user})
    assert anonymous.status_code == 401, anonymous.text
    wrong = session.post(f"{login.url}/v1/statement", data="SELECT 1", auth=(login.user, "not-" + login.password))
    assert wrong.status_code == 401 and "Invalid credentials" in wrong.text, wrong.text
    assert clients.trino_query(stack.endpoints, "SELECT 1", catalog="system") == [(1,)]
    result = must(cli(stack.workdir, "query", "slowest_sagas", "--format", "json", "--param", "since=2h",
                      "--param", "saga=e2e_%"), "query slowest_sagas")  # the CLI's history pack logs in on its own
    assert {r["saga_name"] for r in json.loads(result.stdout)["rows"]} >= {"e2e_order"}, result.stdout[-2000:]
    targets = clients.http_json(f"{stack.endpoints.prometheus}/api/v1/targets?state=active")["data"]["activeTargets"]
    trino = [t for t in targets if t["labels"].get("job") == "trino"]
    assert trino and trino[0]["scrapeUrl"].startswith("https://") and trino[0]["health"] == "up", trino


def test_trino_login_files_are_readable_by_the_owner_only_and_a_second_up_keeps_them(stack: Stack) -> None:
    """The certificate, the hashed password and the shared secret stay the same from one `up` to the next, so a
    second `up` leaves Trino running (a changed file would restart it)."""
    supervisor = Supervisor(stack.run_dir)
    before = (supervisor.running_pid("trino"), (stack.run_dir / "tls" / "ca.pem").read_bytes())
    must(cli(stack.workdir, "up"), "second up")
    assert (supervisor.running_pid("trino"), (stack.run_dir / "tls" / "ca.pem").read_bytes()) == before
    config_dir = stack.run_dir / "config"
    held = [config_dir / "trino" / name for name in ("keystore.pem", "password.db", "config.properties")]
    held += [stack.run_dir / "tls" / "keystore.pem", *sorted((config_dir / "prometheus").glob("*-password"))]
    assert any(p.name.endswith("-password") for p in held), "Prometheus's Trino password file"
    # prometheus.yml names its password file (password_file) and holds no secret itself
    assert stack.credentials.trino_password not in (config_dir / "prometheus" / "prometheus.yml").read_text()
    assert all(p.exists() and os.stat(p).st_mode & 0o077 == 0 for p in held), {
        str(p): oct(os.stat(p).st_mode) if p.exists() else None for p in held}
    assert stack.credentials.trino_password not in (config_dir / "trino" / "password.db").read_text()  # hashed


def test_flink_refuses_jar_uploads_and_the_tiering_job_came_in_through_flinks_client(stack: Stack) -> None:
    """`web.submit.enable: false`: the REST API has no /jars handlers, so an upload is refused; `up` submitted the
    tiering job with Flink's own client (POST /jobs), and it runs."""
    import urllib.error
    import urllib.request

    flink = stack.endpoints.flink_rest
    request = urllib.request.Request(f"{flink}/jars/upload", data=b"--x--\r\n", method="POST",  # noqa: S310
                                     headers={"Content-Type": "multipart/form-data; boundary=x"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)  # noqa: S310 - the test's own stack
    answer = refused.value.read()[:500]
    # Without the /jars handlers the request falls through to the web UI's static file handler, which takes GET only.
    assert refused.value.code == 400 and b"POST request not allowed" in answer, (refused.value.code, answer)
    log = (stack.run_dir / "logs" / "submit-tiering.log").read_text(errors="replace")
    assert "submitted with Flink's client, RUNNING" in log, log[-3000:]
    jobs = clients.http_json(f"{flink}/jobs/overview")["jobs"]
    assert [j["state"] for j in jobs if j["name"] == "Fluss Lake Tiering Service - iceberg"] == ["RUNNING"], jobs


# ---------------------------------------------------------------------------------- object-store identities


def s3_status(stack: Stack, keys: tuple[str, ...], method: str, key: str, body: bytes = b"") -> int:
    """One path-style S3 request to the stack's MinIO, signed with ``keys`` (access, secret[, session token]); its
    HTTP status."""
    from sagaz_lakehouse import tasks

    url = f"{stack.endpoints.s3}/{stack.settings.lake.bucket}/{key}"
    token = {"x-amz-security-token": keys[2]} if len(keys) > 2 else {}
    headers = tasks.s3_headers(method, url, stack.settings.lake.region, keys[0], keys[1], body, extra=token)
    status, _ = tasks.http_request(url, method, body or None, headers, timeout=30)
    return status


def test_each_object_store_identity_is_refused_outside_its_grant(stack: Stack) -> None:
    """The bucket task made one MinIO user per role. Each reads only the prefixes of its grant and writes only
    where the grant says rw; everywhere else MinIO answers 403. The root keys still reach everything."""
    root = stack.credentials.s3_keys(config.ROOT_ROLE)
    probe = f"identity-probe-{uuid.uuid4().hex}"
    prefixes = (addresses.REMOTE_DATA_PREFIX, stack.settings.lake.warehouse, "elsewhere")
    for prefix in prefixes:
        assert s3_status(stack, root, "PUT", f"{prefix}/{probe}", b"probe") == 200
    try:
        seen = {}
        for role, grants in identities.s3_grants(stack.settings).items():
            keys = stack.credentials.s3_keys(role)
            assert keys[0] == f"sagaz-{role}" and keys[1] != root[1]
            modes = dict(grants)
            for prefix in prefixes:
                read = s3_status(stack, keys, "GET", f"{prefix}/{probe}")
                write = s3_status(stack, keys, "PUT", f"{prefix}/{probe}-{role}", b"x")
                seen[(role, prefix)] = (read, write)
                assert read == (200 if prefix in modes else 403), (role, prefix, read)
                assert write == (200 if modes.get(prefix) == "rw" else 403), (role, prefix, write)
        assert s3_status(stack, ("sagaz-reader", "not-" + stack.credentials.s3_keys("reader")[1]), "GET",
                         f"{stack.settings.lake.warehouse}/{probe}") == 403
    finally:
        for prefix in prefixes:
            for suffix in ("", "-fluss", "-lake", "-reader"):
                s3_status(stack, root, "DELETE", f"{prefix}/{probe}{suffix}")


def test_the_credentials_fluss_hands_out_carry_the_fluss_identity_s_grant(stack: Stack) -> None:
    """Fluss gives clients temporary credentials from STS AssumeRole, signed with the servers' keys
    (S3DelegationTokenProvider, 0.9.1). The same call here, with the role the servers name: MinIO answers with
    credentials that reach what sagaz-fluss reaches (read-write remote data, read the warehouse) and nothing else;
    before the identities they were root's."""
    import re
    import urllib.parse

    from sagaz_lakehouse import tasks
    from sagaz_lakehouse.components.fluss import ASSUMED_ROLE_ARN

    body = urllib.parse.urlencode({"Action": "AssumeRole", "Version": "2011-06-15", "RoleArn": ASSUMED_ROLE_ARN,
                                   "RoleSessionName": "fluss-e2e", "DurationSeconds": "900"}).encode()
    url = f"{stack.endpoints.s3}/"
    headers = tasks.s3_headers("POST", url, stack.settings.lake.region, *stack.credentials.s3_keys("fluss"), body,
                               extra={"Content-Type": "application/x-www-form-urlencoded"}, service="sts")
    status, answer = tasks.http_request(url, "POST", body, headers, timeout=30)
    assert status == 200, answer[:500]
    token = tuple(re.search(rf"<{name}>([^<]+)</{name}>".encode(), answer)[1].decode()
                  for name in ("AccessKeyId", "SecretAccessKey", "SessionToken"))
    probe = f"token-probe-{uuid.uuid4().hex}"
    root = stack.credentials.s3_keys(config.ROOT_ROLE)
    remote, warehouse = addresses.REMOTE_DATA_PREFIX, stack.settings.lake.warehouse
    try:
        for prefix in (remote, warehouse, "elsewhere"):
            assert s3_status(stack, root, "PUT", f"{prefix}/{probe}", b"probe") == 200
        assert [s3_status(stack, token, "GET", f"{p}/{probe}") for p in (remote, warehouse, "elsewhere")] == [
            200, 200, 403]
        assert [s3_status(stack, token, "PUT", f"{p}/{probe}-token", b"x") for p in (remote, warehouse, "elsewhere")
                ] == [200, 403, 403]
    finally:
        for prefix in (remote, warehouse, "elsewhere"):
            for suffix in ("", "-token"):
                s3_status(stack, root, "DELETE", f"{prefix}/{probe}{suffix}")


def test_only_minio_holds_the_root_keys(stack: Stack) -> None:
    """Every running process of the stack, by its environment, command line and config files: the root secret is
    MinIO's alone (the bucket task that also had it has finished); the Fluss servers use the fluss identity."""
    root_secret = stack.credentials.secret_key
    supervisor = Supervisor(stack.run_dir)
    holders = []
    for name in supervisor.tracked():
        pid = supervisor.running_pid(name)
        if pid is None:
            continue
        process = Path(f"/proc/{pid}")
        if root_secret.encode() in (process / "environ").read_bytes() + (process / "cmdline").read_bytes():
            holders.append(name)
    assert holders == ["minio"]
    config_dir = stack.run_dir / "config"
    files = [p for p in config_dir.rglob("*") if p.is_file()]
    assert [p for p in files if root_secret in p.read_text(errors="replace")] == []
    server = (config_dir / "fluss-coordinator" / "server.yaml").read_text()
    assert "s3.access-key: sagaz-fluss" in server and stack.credentials.s3_keys("fluss")[1] in server
    assert supervisor.last_exit("create-bucket") == 0
    log = (stack.run_dir / "logs" / "create-bucket.log").read_text()
    assert all(f"identity sagaz-{role} " in log for role in ("fluss", "lake", "reader")), log


def test_an_operator_certificate_replaces_the_made_one(stack: Stack) -> None:
    """secrets.trino_tls: Trino serves the operator's chain once restarted, and a client that trusts only the
    operator's CA logs in; the CLI's clients (`doctor`) trust it through the run folder's ca.pem. Runs last: it
    restarts the stack with another certificate."""
    import ssl

    import requests
    from cryptography import x509
    from support import operator_keystore

    keystore, operator_ca = operator_keystore()
    supplied = stack.workdir / "trino-tls.pem"
    supplied.touch(mode=0o600)
    supplied.write_text(keystore)
    settings_file = stack.workdir / config.CONFIG_FILENAME
    values = yaml.safe_load(settings_file.read_text())
    values["secrets"]["trino_tls"] = supplied.name
    settings_file.write_text(yaml.safe_dump(values))
    # `up` leaves a running component alone and reports its changed configuration; `up --restart-changed` applies it.
    reported = must(cli(stack.workdir, "up"), "up with the operator's certificate")
    assert "trino: already running, with an older configuration" in reported.stderr, \
        reported.stderr[-2000:]
    restarted = must(cli(stack.workdir, "up", "--json", "--restart-changed"), "up --restart-changed")
    assert json.loads(restarted.stdout)["components"]["trino"] == "started", restarted.stdout
    served = ssl.get_server_certificate((addresses.LOOPBACK, stack.settings.ports.trino_https), timeout=30)
    leaf = x509.load_pem_x509_certificates(keystore.encode())[0]
    assert x509.load_pem_x509_certificate(served.encode()) == leaf
    trusted = stack.workdir / "operator-ca.pem"
    trusted.write_text(operator_ca)
    login = stack.endpoints.trino_login
    assert login is not None
    session = requests.Session()
    session.trust_env = False
    answer = session.post(f"{login.url}/v1/statement", data="SELECT 1", auth=(login.user, login.password),
                          verify=str(trusted), timeout=30)
    assert answer.status_code == 200, answer.text
    assert operator_ca in (stack.run_dir / "tls" / "ca.pem").read_text()
    must(cli(stack.workdir, "doctor"), "doctor with the operator's certificate")
    # Prometheus scrapes the restarted Trino over HTTPS, trusting the operator's chain.
    deadline, trino = time.monotonic() + 120, []
    while time.monotonic() < deadline:
        targets = clients.http_json(f"{stack.endpoints.prometheus}/api/v1/targets?state=active")["data"]
        trino = [t for t in targets["activeTargets"] if t["labels"].get("job") == "trino"]
        if trino and trino[0]["health"] == "up":
            break
        time.sleep(5)
    assert trino and trino[0]["health"] == "up", trino


# ------------------------------------------------------------------------------------------ loopback only


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket process ``pid`` listens on (/proc/net/tcp and tcp6, by socket inode)."""
    import ipaddress

    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, width in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            address, port = fields[1].split(":")
            raw = bytes.fromhex(address)
            # /proc prints each 32-bit word in host (little-endian) order
            ordered = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.ip_address(ordered if width == 16 else raw[::-1])
            # a JVM on a dual-stack host listens in tcp6 with IPv4-mapped addresses (::ffff:127.0.0.1)
            mapped = getattr(ip, "ipv4_mapped", None)
            found.add((str(mapped or ip), int(port, 16)))
    return found


def test_every_server_of_the_local_stack_listens_on_loopback_only_but_upstream_s_fixed_binds(stack: Stack) -> None:
    """The README's promise for the local target, checked on the running processes themselves: every listening
    socket is on 127.0.0.1 (or ::1), except those upstream gives no bind address at the pinned versions, each named:
    the Iceberg REST fixture (RESTCatalogServer: `new Server(port)`), and the Prometheus reporters of Fluss and
    Flink (`new HTTPServer(new InetSocketAddress(port))`)."""
    supervisor = Supervisor(stack.run_dir)
    ports = stack.settings.ports
    expected_wildcard = {("rest-catalog", ports.rest_catalog), ("fluss-coordinator", ports.fluss_coordinator_metrics),
                         ("flink-jobmanager", ports.flink_jobmanager_metrics)}
    expected_wildcard |= {(f"fluss-tablet-{i}", ports.fluss_tablet_metrics + i)
                          for i in range(stack.settings.replicas.tablet_servers)}
    expected_wildcard |= {(f"flink-taskmanager-{i}", ports.flink_taskmanager_metrics + i)
                          for i in range(stack.settings.replicas.flink_taskmanagers)}
    wildcard, loopback = set(), set()
    for name in supervisor.tracked():
        pid = supervisor.running_pid(name)
        if pid is None:
            continue
        for address, port in listening_sockets(pid):
            if address in ("127.0.0.1", "::1"):
                loopback.add((name, port))
            else:
                wildcard.add((name, port))
    assert wildcard == expected_wildcard, sorted(wildcard - expected_wildcard)
    assert ("trino", ports.trino_https) in loopback and ("trino", ports.trino) in loopback
    assert ("minio", ports.minio_console) in loopback and ("prometheus", ports.prometheus) in loopback
