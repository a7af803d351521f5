"""The compose target end to end on a real Docker Engine, through the CLI as a user runs it (issues 11 and 25), in
the prod profile with its credentials in a 0600 secrets file (freshness, tiering poll and KV snapshots set back to
dev's, so the waits stay short): `up --target compose` → every tablet server a member of the Fluss cluster, every
service healthy by its own health check, non-root, without capabilities, on a read-only root file system, no
anonymous volume → every client that may not in refused (pyfluss without a login or with a wrong password, anonymous
Trino, Trino over plain HTTP, a jar upload to Flink, the SQL Gateway, which prod does not run) → `create-tables` →
`doctor` green (its probe event goes Fluss → Iceberg → Trino through the containers, logged in) → 1,000 synthetic
events → exactly those rows, field by field, in Iceberg (pyiceberg) and Trino → the lake-maintenance container
compacts them on its (short) schedule, logged in to Trino, and every row stays → `down` (containers gone, volumes
kept) → `up` (the data is still there) → `down --purge` (volumes gone).

One stack serves the module; the tests run in file order and each depends on the ones before it. Its Fluss ports are
the defaults (or, where a stack of the user's holds them, the defaults' pattern in the suite's block): issue 22's
collision showed only there.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import socket
import ssl
import subprocess
import time
import urllib.request
import uuid

import pytest
import yaml
from conftest import PORTS as SUITE_PORTS
from conftest import Stack, run
from saga_data import (
    EVENTS,
    assert_refused,
    assert_same_content,
    iceberg_rows,
    refusals,
    saga_events,
    trino_count,
    trino_sample,
    wait_for_iceberg,
    write_events,
)
from support import fluss_ports_as_by_default

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse import config, lake_maintenance, security
from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components import build_stack
from sagaz_lakehouse.stack import View
from sagaz_lakehouse.targets.compose import layout as target

PORTS, FLUSS_LAYOUT = fluss_ports_as_by_default(SUITE_PORTS)

PROJECT = "sagaz-ct-e2e"
# Lake maintenance every 20 s instead of dev's 10 min; the catalog's tables in PostgreSQL, as in prod (issue 27).
MAINTENANCE = {"maintenance.schedule": "20s", "catalog.database": "postgresql"}
STATE: dict[str, object] = {}  # what a later test reads back: the batch written, the events sent
SECRETS = {"s3_access_key": "compose-e2e", "s3_secret_key": secrets.token_hex(16),
           "fluss_password": secrets.token_hex(16), "trino_password": secrets.token_hex(16)}
PROD = {"profile": "prod", "secrets.file": "secrets.yaml", "lake.freshness": "10s", "lake.tiering_poll": "2s",
        "lake.kv_snapshot_interval": "5s"}


@pytest.fixture(scope="module")
def stack(engine, tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("compose-e2e")
    (workdir / "secrets.yaml").touch(mode=0o600)
    (workdir / "secrets.yaml").write_text(yaml.safe_dump(SECRETS))
    made = Stack(workdir, PROJECT, overrides={**PROD, **MAINTENANCE}, ports=PORTS)
    made.purge()  # leftovers of an interrupted earlier run
    print(f"Fluss listeners: {FLUSS_LAYOUT}")
    STATE["up"] = made.must("up", "--timeout", "600")
    yield made
    made.purge()


@pytest.fixture(scope="module")
def settings(stack) -> config.Settings:
    return stack.settings


def rendered(stack: Stack) -> dict:
    return yaml.safe_load((stack.workdir / ".sagaz-lakehouse" / "compose" / "compose.yaml").read_text())


def assert_no_anonymous_volumes(stack: Stack) -> None:
    """Every volume a container has is one of the project's named volumes, and every folder its image declares as
    VOLUME is covered by a mount (else the engine makes an anonymous volume that outlives the container)."""
    for c in stack.containers():
        name = c["Name"].lstrip("/")
        for mount in c["Mounts"]:
            if mount["Type"] == "volume":
                assert mount["Name"].startswith(f"{PROJECT}_"), f"{name}: anonymous volume at {mount['Destination']}"
        image = json.loads(run(["docker", "image", "inspect", c["Image"]]).stdout)[0]["Config"]
        covered = {m["Target"] for m in c["HostConfig"].get("Mounts") or []} | {m["Destination"] for m in c["Mounts"]}
        missing = set(image.get("Volumes") or {}) - covered
        assert not missing, f"{name}: image VOLUME {sorted(missing)} without a mount"


def dangling() -> set[str]:
    """Volumes no container uses (an anonymous volume of a removed container stays behind as one)."""
    return set(run(["docker", "volume", "ls", "-q", "--filter", "dangling=true"]).stdout.split())


def test_up_waits_until_the_coordinator_lists_every_tablet_server(stack, settings):
    """`up` reports success only once the Fluss cluster itself counts every tablet server (a server that runs but
    was refused, as tablet 1 was with the default ports, would make it fail naming that server)."""
    up = STATE["up"]
    assert isinstance(up, subprocess.CompletedProcess)
    wanted = settings.replicas.tablet_servers
    assert f"1 coordinator, {wanted}/{wanted} tablet server(s) registered with the coordinator" in up.stderr, up.stderr
    assert "stack is up" in up.stderr


def test_fluss_servers_read_every_line_of_their_configuration(stack):
    """Fluss warns about a configuration line it cannot read and drops it; none may be lost (issue 22)."""
    for c in stack.containers():
        if "fluss" in c["Name"]:
            log = run(["docker", "logs", c["Id"]])
            assert "Line is not a key-value pair" not in log.stdout + log.stderr, c["Name"]
            assert "Error after splitting key and value" not in log.stdout + log.stderr, c["Name"]


def test_every_service_is_healthy_by_its_own_check_and_runs_hardened_as_its_image_user(stack, settings):
    rows = json.loads(stack.must("status", "--json").stdout)
    states = {r["component"]: r["state"] for r in rows}
    model = build_stack(settings, View.INTERNAL)
    expected = {name: "completed" if c.one_shot else "healthy" for c, name in model.instances()}
    assert states == expected, stack.diagnosis()
    services = rendered(stack)["services"]
    by_service = {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in stack.containers()}
    assert set(by_service) == set(services)  # one container per rendered service, volume-owner included
    for name, svc in services.items():
        container = by_service[name]
        if "healthcheck" in svc:
            assert container["State"]["Health"]["Status"] == "healthy", name
            assert container["Config"]["Healthcheck"]["Test"] == svc["healthcheck"]["test"], name
        else:
            assert container["State"]["Status"] == "exited" and container["State"]["ExitCode"] == 0, name
        uid = svc["user"].split(":")[0]
        assert container["Config"]["User"] == svc["user"], name
        if name != target.VOLUME_OWNER:
            assert uid != "0", f"{name} runs as root"
        # No capabilities (the volume owner: exactly the three its commands need), no privilege gain, no writes
        # outside the volumes and tmpfs folders.
        host = container["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and host["ReadonlyRootfs"] is True, name
        assert "no-new-privileges:true" in host["SecurityOpt"], name
        added = sorted(cap.removeprefix("CAP_") for cap in host.get("CapAdd") or [])  # the engine adds CAP_
        assert added == (sorted(target.OWNER_CAPABILITIES) if name == target.VOLUME_OWNER else []), name
        if container["State"]["Status"] == "running":
            assert run(["docker", "exec", container["Id"], "id", "-u"]).stdout.strip() == uid, name
            assert run(["docker", "exec", container["Id"], "touch", "/read-only"]).returncode != 0, name
            for folder in host.get("Tmpfs") or {}:  # each tmpfs is the service user's to write
                probe = run(["docker", "exec", container["Id"], "touch", f"{folder}/.sagaz-probe"])
                assert probe.returncode == 0, (name, folder, probe.stderr)
                run(["docker", "exec", container["Id"], "rm", "-f", f"{folder}/.sagaz-probe"])


def test_no_container_has_an_anonymous_volume(stack):
    assert_no_anonymous_volumes(stack)


def test_published_endpoints_answer_on_loopback_and_zookeeper_stays_inside(stack):
    def http(port: int, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.read()

    assert b"endpoints" in http(PORTS["rest_catalog"], "/v1/config")
    assert b'"starting":false' in http(PORTS["trino"], "/v1/info").replace(b" ", b"")  # public, also in prod
    ca = stack.workdir / ".sagaz-lakehouse" / "compose" / "tls" / "ca.pem"
    context = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(f"https://127.0.0.1:{PORTS['trino_https']}/v1/info", timeout=10,
                                context=context) as response:  # the certificate names 127.0.0.1
        assert b'"starting":false' in response.read().replace(b" ", b"")
    assert b'"taskmanagers":1' in http(PORTS["flink_rest"], "/overview")
    http(PORTS["minio"], "/minio/health/ready")
    for port in (PORTS["fluss_coordinator"], PORTS["fluss_tablet"]):
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
    zookeeper = next(c for c in stack.containers() if c["Name"].endswith(f"-{s.ZOOKEEPER}-1"))
    assert not zookeeper["NetworkSettings"]["Ports"].get(f"{PORTS['zookeeper']}/tcp")  # not published


def test_every_client_without_the_login_is_refused_with_the_servers_own_error(stack):
    assert_refused(refusals(stack.settings, stack.endpoints, stack.credentials), stack.database)


def test_secrets_reach_each_container_as_files_its_user_alone_reads_never_env_or_args(stack):
    """0600 beside .env on the host; in the instance's own secrets volume, 0400 and owned by the instance's user;
    the passwords in no container's environment, command line or image layer."""
    project_dir = stack.workdir / ".sagaz-lakehouse" / "compose"
    files = [p for p in (project_dir / target.SECRETS_DIR).rglob("*") if p.is_file()]
    assert files and all(p.stat().st_mode & 0o777 == 0o600 for p in files)
    passwords = (stack.credentials.fluss_password, stack.credentials.trino_password,
                 stack.credentials.catalog_db_password())  # PostgreSQL's and the catalog's, as files too
    for c in stack.containers():
        config_text = json.dumps([c["Config"].get("Env"), c["Config"].get("Cmd"), c["Config"].get("Entrypoint"),
                                  c["Args"], c["Path"]])
        assert not any(p in config_text for p in passwords), c["Name"]
    tablet = next(c for c in stack.containers() if c["Name"].endswith("-fluss-tablet-0-1"))
    listing = run(["docker", "exec", tablet["Id"], "stat", "-c", "%a %u %n", f"{security.SECRETS_DIR}/jaas.conf"])
    assert listing.stdout.split()[:2] == ["400", "9999"], listing.stdout + listing.stderr
    assert run(["docker", "exec", tablet["Id"], "sh", "-c", "echo x > /etc/sagaz-lakehouse/secrets/x"]).returncode


def test_restart_restarts_the_coordinator_alone_and_returns_once_it_is_healthy(stack, settings):
    """create-tables' repair of apache/fluss#2710 (and `sagaz-lakehouse restart`): the coordinator's container
    starts again, no other does; the next test proves the stack works after it (create-tables, doctor's probe)."""
    def started() -> dict[str, str]:
        return {c["Config"]["Labels"]["com.docker.compose.service"]: c["State"]["StartedAt"]
                for c in stack.containers() if c["State"]["Running"]}

    before = started()
    restarted = json.loads(stack.must("restart", "fluss-coordinator", "--json").stdout)
    assert restarted["restarted"] == "fluss-coordinator"
    # returned once the cluster serves again, not when the port answers (the coordinator first says "not
    # initialized yet"): every tablet server listed by the restarted coordinator
    assert len(restarted["fluss"]["tablet_servers"]) == settings.replicas.tablet_servers, restarted
    after = started()
    assert after["fluss-coordinator"] != before["fluss-coordinator"]
    assert {k: v for k, v in after.items() if k != "fluss-coordinator"} == {
        k: v for k, v in before.items() if k != "fluss-coordinator"}
    health = [c["State"].get("Health", {}).get("Status") for c in stack.containers()
              if c["Config"]["Labels"]["com.docker.compose.service"] == "fluss-coordinator"]
    assert health == ["healthy"], health


def test_create_tables_then_doctor_is_green_through_the_containers(stack):
    created = json.loads(stack.must("create-tables", "--json").stdout)
    assert created["created"] is True
    report = json.loads(stack.must("doctor", "--json").stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is True, report
    assert checks["flink sql gateway"]["status"] == "skip"  # off in prod
    assert checks["trino"]["status"] == "pass"  # over HTTPS, logged in
    assert checks["zookeeper"]["status"] == "pass"
    assert "compose target's own check" in checks["zookeeper"]["detail"]  # judged by its container health
    assert "tiering job RUNNING" in checks["flink + tiering job"]["detail"]
    assert checks["probe event Fluss → Iceberg → Trino"]["status"] == "pass"
    assert report["metrics"]["tiering_latency_s"] > 0


def test_the_catalog_keeps_its_tables_in_postgresql(stack):
    """The bundled catalog on a real database (issue 27): its rows are in the catalog-db container's PostgreSQL,
    the catalog itself has no volume, and its password reached neither its command line nor its log."""
    db = next(c for c in stack.containers() if c["Name"].endswith(f"-{s.CATALOG_DB}-1"))
    rows = run(["docker", "exec", db["Id"], "psql", "-h", "/var/run/postgresql", "-U", "iceberg", "-d",
                "iceberg_catalog", "-Atc", "SELECT table_namespace || '.' || table_name FROM iceberg_tables"])
    assert "sagaz.saga_events" in rows.stdout.split(), rows.stdout + rows.stderr
    catalog = next(c for c in stack.containers() if c["Name"].endswith(f"-{s.REST_CATALOG}-1"))
    # no volume of its own data: only its secrets volume (the pgpass file), which issue 25's compose layout gives
    # every service that reads a secret
    assert not [m for m in catalog["Mounts"] if m["Type"] == "volume" and not m["Name"].endswith("-secrets")]
    log = run(["docker", "logs", catalog["Id"]])
    assert "jdbc:postgresql://catalog-db:5432/iceberg_catalog" in log.stdout + log.stderr  # its start-up dump
    password = lakehouse.resolve_credentials(stack.settings, environ={}, base_dir=stack.workdir).catalog_db_password()
    top = run(["docker", "top", catalog["Id"], "-eo", "args"]).stdout
    assert password not in log.stdout + log.stderr and password not in top


def test_prometheus_scrapes_every_container_and_loads_the_rules(stack, settings):
    """Inside the compose network: the scrape configuration generated from the model reaches every metrics endpoint
    (the Fluss and Flink reporters, ZooKeeper's provider, MinIO, Trino with its user header) by service name."""
    import time

    from sagaz_lakehouse.components import build_stack
    from sagaz_lakehouse.stack import View

    base = f"http://127.0.0.1:{PORTS['prometheus']}/api/v1"
    expected = {(c.name, n) for c in build_stack(settings, View.INTERNAL).components if c.metrics
                for n in c.instance_names()} | {("prometheus", "prometheus")}
    deadline, down = time.monotonic() + 120, None
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/targets", timeout=10) as response:  # noqa: S310 - loopback
            targets = json.load(response)["data"]["activeTargets"]
        assert {(t["labels"]["job"], t["labels"]["instance"]) for t in targets} == expected
        down = [(t["labels"]["instance"], t["lastError"]) for t in targets if t["health"] != "up"]
        if not down:
            break
        time.sleep(3)
    assert not down, down
    with urllib.request.urlopen(f"{base}/rules", timeout=10) as response:  # noqa: S310 - loopback
        rules = [r for g in json.load(response)["data"]["groups"] for r in g["rules"]]
    assert rules and all(r["health"] == "ok" for r in rules)


def test_thousand_events_reach_iceberg_and_trino_with_their_content(stack, settings):
    batch = f"ct-{uuid.uuid4().hex[:8]}"
    sent = saga_events(batch)
    at = stack.endpoints  # logged in: Fluss over SASL, Trino over HTTPS with the password, the reader's S3 keys
    asyncio.run(write_events(settings, sent, at))
    try:
        rows = wait_for_iceberg(settings, batch, EVENTS, at=at, credentials=stack.credentials)
    except pytest.fail.Exception as exc:
        raise AssertionError(f"{exc}\n" + "\n".join(stack.tiering_logs())) from None
    assert_same_content(sent, rows)
    assert trino_count(settings, batch, at) == EVENTS
    assert trino_sample(settings, f"{batch}-0007", at) == [("step_failed", "TimeoutError", 3)]
    STATE.update(batch=batch, sent=sent)


def test_the_maintenance_container_compacts_on_its_schedule_and_every_row_stays(stack, settings):
    """The lake-maintenance service of the compose project (the python image running maintenance.py): a run after
    the 1,000 events, its log showing the file count falling, and every row still there with its content."""
    assert STATE, "needs the events of the test before"
    written_at = time.time()
    endpoints = stack.endpoints  # the catalog has no login; Trino's below wants the password over HTTPS
    deadline = time.monotonic() + 180
    while (lake_maintenance.observe(settings, endpoints)[0].maintained_at or 0) <= written_at:
        if time.monotonic() > deadline:
            pytest.fail("no maintenance run within 180 s of the writes\n" + stack.cli("logs", "lake-maintenance")
                        .stdout[-3000:], pytrace=False)
        time.sleep(3)
    log = stack.must("logs", "lake-maintenance", "--lines", "400").stdout
    runs = [(int(a), int(b)) for a, b in re.findall(r"data files (\d+) → (\d+)", log)]
    assert any(before > after for before, after in runs), log[-3000:]
    assert "maintenance failed" not in log, log[-3000:]
    batch = STATE["batch"]
    assert trino_count(settings, batch, endpoints) == EVENTS  # type: ignore[arg-type]
    assert trino_sample(settings, f"{batch}-0007", endpoints) == [("step_failed", "TimeoutError", 3)]
    shape, findings = lake_maintenance.observe(settings, endpoints)
    assert not findings and shape.properties["write.metadata.delete-after-commit.enabled"] == "true", findings


def test_down_keeps_the_volumes_and_up_brings_the_data_back(stack, settings):
    assert STATE, "needs the events of the test before"
    volumes = stack.volumes()
    assert volumes == sorted(f"{PROJECT}_{v}" for v in rendered(stack)["volumes"])
    dangling_before = dangling()
    stack.must("down")
    assert stack.containers() == []
    assert stack.volumes() == volumes
    stack.must("up", "--timeout", "600")
    batch, sent = STATE["batch"], STATE["sent"]
    at = stack.endpoints
    assert_same_content(sent, iceberg_rows(settings, batch, stack.credentials, at))  # type: ignore[arg-type]
    assert trino_count(settings, batch, at) == EVENTS  # type: ignore[arg-type]
    again = json.loads(stack.must("create-tables", "--json").stdout)
    assert again["created"] is False  # the Fluss table survived in ZooKeeper and the tablet volume
    assert_no_anonymous_volumes(stack)
    leftovers = dangling() - dangling_before
    assert not leftovers, f"volumes left behind by the down/up cycle: {sorted(leftovers)}"


def test_down_purge_removes_containers_volumes_and_network(stack):
    stack.must("down", "--purge", timeout=300)
    assert stack.containers() == []
    assert stack.volumes() == []
    assert stack.networks() == []
