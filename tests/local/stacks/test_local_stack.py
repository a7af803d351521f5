"""End to end on the local target: the real ZooKeeper, MinIO, Iceberg REST catalog, Fluss, Flink (tiering job) and
Trino, started by `sagaz-lakehouse up` as native processes on loopback.

One stack serves the whole module (it takes about a minute to start); the tests run in file order. A component that
does not start fails the fixture with the CLI's output, which carries that component's log tail.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from pathlib import Path

import pytest
from saga_data import (
    EVENTS,
    assert_same_content,
    endpoints,
    iceberg_rows,
    saga_events,
    trino_count,
    trino_sample,
    wait_for_iceberg,
    write_events,
)
from support import cli, init_with_ports, log_files, must, suite_port, suite_ports

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import clients, config


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("local-stack")
    # ports of its own: the defaults stay free for the suites that check them and for a user's own `make up`
    init_with_ports(workdir, suite_ports("local-stack"))
    must(cli(workdir, "up"), "up")
    settings = lakehouse.load_settings(workdir / config.CONFIG_FILENAME, environ={})
    yield workdir, settings
    cli(workdir, "down", "--purge", timeout=300)


def pids(workdir: Path) -> dict[str, str]:
    folder = workdir / ".sagaz-lakehouse" / "pids"
    return {p.stem: p.read_text().strip() for p in folder.glob("*.pid")}


def test_up_twice_leaves_running_components_alone_and_restart_changed_restarts_only_the_changed_one(stack):
    workdir, _ = stack
    before = pids(workdir)
    second = must(cli(workdir, "up"), "up (second time)")
    assert "already running" in second.stderr and "older configuration" not in second.stderr
    after = pids(workdir)
    assert {k: after[k] for k in before} == before  # nothing restarted
    # A setting that only the tiering job reads: the JobManager (which holds the job) is reported out of date.
    changed = must(cli(workdir, "up", "--json", "--set", "lake.tiering_poll=3s"), "up --set lake.tiering_poll=3s")
    states = json.loads(changed.stdout)["components"]
    assert {k for k, v in states.items() if v == "out of date"} == {"flink-jobmanager"}, states
    assert pids(workdir) == after
    # --restart-changed applies it: the JobManager alone restarts and gets the tiering job again (the later tests
    # prove tiering through it: doctor, the thousand events)
    restarted = must(cli(workdir, "up", "--json", "--restart-changed", "--set", "lake.tiering_poll=3s"),
                     "up --restart-changed --set lake.tiering_poll=3s")
    states = json.loads(restarted.stdout)["components"]
    assert {k for k, v in states.items() if v == "started"} == {"flink-jobmanager"}, states
    assert states["submit-tiering"] == "completed", states
    now = pids(workdir)
    assert now["flink-jobmanager"] != after["flink-jobmanager"], "the JobManager kept its old process"
    assert {k: v for k, v in now.items() if k != "flink-jobmanager"} == {
        k: v for k, v in after.items() if k != "flink-jobmanager"}
    status = must(cli(workdir, "status", "--json"), "status --json")
    rows = {r["component"]: r["state"] for r in json.loads(status.stdout)}
    assert {rows.pop("create-bucket"), rows.pop("submit-tiering")} == {"completed"}
    assert set(rows.values()) == {"healthy"}, rows


def test_create_tables_is_idempotent_and_refuses_a_conflicting_definition(stack):
    workdir, settings = stack
    first = must(cli(workdir, "create-tables", "--json"), "create-tables")
    assert json.loads(first.stdout)["created"] is True
    second = must(cli(workdir, "create-tables", "--json"), "create-tables (second time)")
    assert json.loads(second.stdout)["created"] is False
    conflict = cli(workdir, "create-tables", "--set", "lake.buckets=4")
    assert conflict.returncode == 2
    assert "bucket count is 8, expected 4" in conflict.stderr and "nothing was changed" in conflict.stderr

    async def buckets() -> int:
        import fluss

        async with clients.fluss_connection(endpoints(settings)) as connection:
            info = await connection.get_admin().get_table_info(fluss.TablePath(settings.lake.database, "saga_events"))
            return info.num_buckets

    assert asyncio.run(buckets()) == 8


def test_create_tables_repairs_a_missed_table_by_restarting_the_coordinator(stack, monkeypatch):
    """apache/fluss#2710's repair, on the real servers: the coordinator's miss is simulated (the first leader wait
    reports none; the real race is rare), everything after it is real: the local target restarts the coordinator
    alone, which elects the table's leaders, and the second wait sees them."""
    from sagaz_lakehouse import security, tables
    from sagaz_lakehouse.stack import COORDINATOR, View
    from sagaz_lakehouse.targets.local.driver import LocalDriver

    workdir, settings = stack
    settings = lakehouse.load_settings(workdir / config.CONFIG_FILENAME, {"lake.database": "missed"}, environ={})
    real_wait, missed = tables.wait_for_leaders, []

    async def miss_once(admin, path, buckets, log, *, created, **kwargs):
        if not missed:
            missed.append(created)
            raise tables.LeadersNotElected(f"{path}: the Fluss coordinator elected no leader (simulated)", "", created)
        await real_wait(admin, path, buckets, log, created=created, **kwargs)

    monkeypatch.setattr(tables, "wait_for_leaders", miss_once)
    before = pids(workdir)
    said: list[str] = []
    credentials = security.resolve_credentials(settings, View.EXTERNAL, base_dir=workdir)
    result = tables.create_tables(settings, credentials, endpoints(settings), log=said.append,
                                  restart_coordinator=lambda: LocalDriver(settings, workdir, said.append).restart(
                                      COORDINATOR, timeout=180))
    assert missed == [True] and result["created"] is True and result["coordinator_restarted"] is True, result
    after = pids(workdir)
    assert after[COORDINATOR] != before[COORDINATOR], "the coordinator kept its process"
    others = [name for name in before if name != COORDINATOR]  # a background build may start Prometheus meanwhile
    assert {k: after.get(k) for k in others} == {k: before[k] for k in others}, "only the coordinator restarts"
    assert any("apache/fluss#2710" in line for line in said), said


@pytest.mark.parametrize(("database", "change", "expected"), [
    ("schema_additive", "drop the last column", ["add column timestamp timestamp\n",
                                                 "Fluss 0.9.1 cannot add a column to a table tiered to Iceberg"]),
    ("schema_destructive", "retype duration_ms", ["(destructive) change column duration_ms from string to bigint",
                                                  "a destructive change is never applied"]),
])
def test_create_tables_refuses_a_column_change_with_its_plan(stack, database, change, expected):
    """An existing saga_events whose columns differ: create-tables prints what it would take and changes nothing
    (exit 2). Adding a column is the change Fluss 0.9.1 cannot apply to a table tiered to Iceberg (README,
    Operations: schema changes); dropping or retyping one is never applied."""
    import fluss
    import pyarrow as pa

    from sagaz_lakehouse import tables

    workdir, settings = stack
    schema = tables.arrow_schema()
    if change == "drop the last column":
        schema = schema.remove(schema.get_field_index("timestamp"))
    else:
        schema = schema.set(schema.get_field_index("duration_ms"), pa.field("duration_ms", pa.string()))

    async def create() -> None:
        async with clients.fluss_connection(endpoints(settings)) as connection:
            admin = connection.get_admin()
            await admin.create_database(database, ignore_if_exists=True)
            descriptor = fluss.TableDescriptor(fluss.Schema(schema, primary_keys=["event_id"]), bucket_count=2,
                                               bucket_keys=["event_id"])
            await admin.create_table(fluss.TablePath(database, "saga_events"), descriptor, ignore_if_exists=True)

    asyncio.run(create())
    refused = cli(workdir, "create-tables", "--set", f"lake.database={database}", timeout=300)
    assert refused.returncode == 2, refused.stderr
    for text in expected:
        assert text in refused.stderr, refused.stderr
    assert "nothing was changed" in refused.stderr


@pytest.mark.parametrize(("args", "code"), [
    (("create-tables", "--set", "lake.buckets=4"), 2),  # a conflicting definition: nothing changes
    (("doctor", "--quick", "--set", "lake.database=no_such_db"), 1),  # a check fails
    (("doctor", "--quick"), 0),
])
def test_every_path_exits_with_its_documented_code_every_time(stack, args, code):
    """Each run opens pyfluss connections; one left to interpreter shutdown used to abort the process (134)."""
    workdir, _ = stack
    results = [cli(workdir, *args, timeout=120) for _ in range(20)]
    codes = [r.returncode for r in results]
    odd = next((r for r in results if r.returncode != code), None)
    assert codes == [code] * 20, f"{' '.join(args)}: {codes}\n{odd.stdout[-2000:]}\n{odd.stderr[-2000:]}"


def test_doctor_proves_tiering(stack):
    workdir, _ = stack
    report = json.loads(must(cli(workdir, "doctor", "--json"), "doctor").stdout)
    assert report["ok"] is True
    statuses = {c["name"]: c["status"] for c in report["checks"]}
    assert statuses["probe event Fluss → Iceberg → Trino"] == "pass", report
    assert report["metrics"]["tiering_latency_s"] > 0


@pytest.fixture
def refused_tablet(stack, tmp_path):
    """A real Fluss tablet server (the stack's own distribution and JVM) that registers as server 2 with listeners
    sharing a port, as tablet 1 did with the default ports on the container targets (issue 22): it runs, and the
    coordinator refuses its registration. It advertises tablet 2's client port, so the reason names that server."""
    import re
    import signal
    import subprocess

    workdir, settings = stack
    run_dir = workdir / ".sagaz-lakehouse"
    model = run_dir / "config" / "fluss-tablet-0"
    pid = (run_dir / "pids" / "fluss-tablet-0.pid").read_text().split()[0]
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "log4j-console.properties").write_text((model / "log4j-console.properties").read_text())
    client = settings.ports.fluss_tablet + 2
    spare = suite_port("local-stack")
    server = (model / "server.yaml").read_text()
    replaced = {"tablet-server.id": "2", "data.dir": str(tmp_path / "data"),
                "bind.listeners": f"FLUSS://127.0.0.1:{client}, CLIENT://127.0.0.1:{spare}",
                "advertised.listeners": f"CLIENT://127.0.0.1:{client}",
                "metrics.reporter.prometheus.port": str(spare + 1)}
    for key, value in replaced.items():
        server = re.sub(rf"(?m)^{re.escape(key)}: .*$\n?", "", server) + f"{key}: {value}\n"
    (conf / "server.yaml").write_text(server)
    argv = [a for a in argv if not a.startswith("-Dsagaz.run-dir=")]  # not one of the supervisor's processes
    argv = [f"-Dlog4j.configurationFile=file:{conf}/log4j-console.properties"
            if a.startswith("-Dlog4j.configurationFile=") else a for a in argv]
    argv[argv.index("--configDir") + 1] = str(conf)
    argv = ["-Xmx256m" if a.startswith("-Xmx") else a for a in argv]
    log = (tmp_path / "rogue.log").open("w")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "FLUSS_PLUGINS_DIR":
                               str(Path(argv[argv.index("-cp") + 1].removesuffix("/lib/*")) / "plugins")})
    coordinator_log = run_dir / "logs" / "fluss-coordinator.log"
    deadline = time.monotonic() + 90
    while "more than one endpoint with the same port" not in coordinator_log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the refused tablet server did not register (exit {process.poll()}):\n"
                        f"{(tmp_path / 'rogue.log').read_text()[-3000:]}", pytrace=False)
        time.sleep(1)
    yield client
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()


def test_a_tablet_server_the_coordinator_refuses_is_named_with_the_coordinator_s_reason(stack, refused_tablet):
    """`doctor` and `create-tables` ask the cluster which tablet servers are members; for one that runs but was
    refused they name it and quote the coordinator's own log, instead of "unexpected FlussError ... please
    report"."""
    workdir, _ = stack
    three = ("--set", "replicas.tablet_servers=3")
    doctor = cli(workdir, "doctor", "--quick", "--json", *three, timeout=300)
    assert doctor.returncode == 1, doctor.stderr
    check = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "fluss servers")
    assert check["status"] == "fail"
    assert check["detail"].startswith("1 coordinator, 2/3 tablet server(s) registered with the coordinator; "
                                      "missing: fluss-tablet-2; the coordinator's reason: fluss-tablet-2: "
                                      "java.lang.IllegalArgumentException: There is more than one endpoint with "
                                      "the same port"), check
    assert f"CLIENT://127.0.0.1:{refused_tablet}" in check["detail"]
    assert "logs fluss-tablet-2" in check["hint"]
    created = cli(workdir, "create-tables", *three, "--set", "lake.database=refused_members", timeout=300)
    assert created.returncode == 1, created.stderr
    assert "unexpected" not in created.stderr and "please report" not in created.stderr
    assert ("cannot create refused_members.saga_events with 3 replicas (durability.replication_factor): 2 of 3 "
            "tablet servers are registered with the Fluss coordinator") in created.stderr, created.stderr
    assert "(missing: fluss-tablet-2)" in created.stderr
    assert "the coordinator's reason: fluss-tablet-2: java.lang.IllegalArgumentException" in created.stderr


def test_thousand_events_tier_to_iceberg_and_trino_and_survive_a_restart(stack):
    workdir, settings = stack
    batch = f"e2e-{uuid.uuid4().hex[:8]}"
    sent = saga_events(batch)
    asyncio.run(write_events(settings, sent))

    assert_same_content(sent, wait_for_iceberg(settings, batch, EVENTS))
    assert trino_count(settings, batch) == EVENTS
    assert trino_sample(settings, f"{batch}-0007") == [("step_failed", "TimeoutError", 3)]

    must(cli(workdir, "down"), "down")
    assert not pids(workdir)
    assert (workdir / ".sagaz-lakehouse" / "data").is_dir()  # down keeps data
    must(cli(workdir, "up"), "up after down")
    assert len(iceberg_rows(settings, batch)) == EVENTS
    assert trino_count(settings, batch) == EVENTS


def test_updated_events_read_back_through_the_equality_delete_fallback(stack):
    """An upsert of an existing key makes Fluss tier an Iceberg equality delete, which PyIceberg cannot apply:
    clients.iceberg_read then reads the data files alone (pyiceberg's ArrowScan over FileScanTasks). This pins
    that behaviour of pyiceberg on a real table; Trino applies the delete and shows only the new row."""
    _, settings = stack
    batch = f"upd-{uuid.uuid4().hex[:8]}"
    first = saga_events(batch)[:3]
    asyncio.run(write_events(settings, first))
    wait_for_iceberg(settings, batch, 3)
    changed = {**first[0], "event_type": "saga_completed", "total_duration_ms": 999}
    asyncio.run(write_events(settings, [changed]))

    from pyiceberg.expressions import EqualTo

    catalog = clients.iceberg_catalog(settings, config.DEV_CREDENTIALS, endpoints(settings))
    deadline = time.monotonic() + 240
    while True:
        trino = clients.trino_query(endpoints(settings), f"SELECT event_type, total_duration_ms FROM "  # noqa: S608
                                    f"{settings.lake.database}.saga_events WHERE event_id = ?", (first[0]["event_id"],))
        if trino == [("saga_completed", 999)]:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the update never reached Trino: {trino}", pytrace=False)
        time.sleep(2)
    table = catalog.load_table(f"{settings.lake.database}.saga_events")
    rows, fell_back = clients.iceberg_read(table, EqualTo("saga_name", batch))
    assert fell_back is True, "pyiceberg applied the equality delete itself: the fallback can go"
    versions = sorted(r["total_duration_ms"] for r in rows.to_pylist() if r["event_id"] == first[0]["event_id"])
    assert versions == sorted([first[0]["total_duration_ms"], 999])  # both versions: data files only
    # The same through a filter written as text, as `doctor` passes its probe's (the fallback once took only
    # expression objects and failed on text with "Cannot visit unsupported expression").
    text_rows, fell_back = clients.iceberg_read(table, f"saga_name = '{batch}'")
    assert fell_back is True and text_rows.sort_by("event_id").equals(rows.sort_by("event_id"))


def test_no_log_file_holds_the_secret_key(stack):
    """Every component's log of this whole run (start-up dumps its configuration, credentials included, unless
    masked) and the CLI's own: the secret value appears in none."""
    workdir, _ = stack
    logs = log_files(workdir / ".sagaz-lakehouse")
    assert len(logs) >= 8, f"expected a log per component, found {sorted(map(str, logs))}"
    leaks = [str(p) for p in logs if config.DEV_CREDENTIALS.secret_key in p.read_text(errors="replace")]
    assert leaks == []


def test_down_purge_removes_everything(stack):
    workdir, _ = stack
    must(cli(workdir, "down", "--purge"), "down --purge")
    assert not (workdir / ".sagaz-lakehouse").exists()
    started = time.monotonic()
    again = cli(workdir, "doctor", "--quick", timeout=60)
    assert time.monotonic() - started < 15
    assert again.returncode == 1 and "is the stack up?" in again.stdout + again.stderr
