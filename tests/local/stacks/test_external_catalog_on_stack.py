"""`catalog.kind: external` end to end on the local target: a team's own Iceberg REST catalog that wants OAuth2.

The catalog is a stand-in, named as such (tests/catalog_standin.py): Iceberg's REST server (the locked fixture jar)
behind a token-checking front that grants tokens for one client id, secret and scope only and refuses every request
without one of its tokens. The stack gets the catalog's URI, warehouse, token endpoint and scope as settings and the
client credentials in its 0600 secrets file, and runs no catalog of its own.

In file order: a wrong secret makes `up` exit 2 naming the failed step before anything starts; with the right one,
`up` checks the catalog (token, /v1/config, the namespace) and starts the stack without a catalog; `create-tables`
and `doctor` pass; 1,000 events reach Iceberg (pyiceberg) and Trino through the catalog; every kind of client
(Fluss's coordinator and the tiering job, Trino, the CLI's Python clients, lake maintenance) logged in; no log and
no command line of the stack holds the secret; `down --purge`.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from catalog_standin import TOKEN_PATH, ExternalCatalog, running
from saga_data import EVENTS, assert_same_content, saga_events, trino_count, wait_for_iceberg, write_events
from support import SuiteStack, init_with_ports, log_files, suite_port, suite_ports

from sagaz_lakehouse import config
from sagaz_lakehouse import stack as s

PORTS = suite_ports("external-catalog")
FRONT_PORT = suite_port("external-catalog")
CLIENT_ID = "sagaz-e2e"
SCOPE = "PRINCIPAL_ROLE:ALL"  # Apache Polaris' scope in its docs: any scope but the default proves it is passed
SECRET = secrets.token_hex(16)
WAREHOUSE = "s3://sagaz-lakehouse/warehouse"


def write_secrets(path: Path, secret: str) -> None:
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump({"s3_access_key": config.DEV_CREDENTIALS.access_key,
                                    "s3_secret_key": config.DEV_CREDENTIALS.secret_key,
                                    "catalog_credential": f"{CLIENT_ID}:{secret}"}))


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExternalCatalog]:
    yield from running(tmp_path_factory.mktemp("external-catalog"), FRONT_PORT, PORTS["minio"], CLIENT_ID, SECRET,
                       SCOPE, WAREHOUSE)


@pytest.fixture(scope="module")
def stack(catalog: ExternalCatalog, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SuiteStack]:
    workdir = tmp_path_factory.mktemp("external-catalog-stack")
    settings_file = init_with_ports(workdir, PORTS)
    values = yaml.safe_load(settings_file.read_text())
    uri = f"http://127.0.0.1:{FRONT_PORT}"
    values.update(catalog={"kind": "external", "uri": uri, "warehouse": WAREHOUSE,
                           "oauth2_server_uri": uri + TOKEN_PATH, "scope": SCOPE},
                  secrets={"file": str(workdir / "secrets.yaml")},  # absolute: the tests' own clients read it too
                  maintenance={"schedule": "20s"})
    settings_file.write_text(yaml.safe_dump(values))
    made = SuiteStack(workdir)
    try:
        yield made
    finally:
        made.down()


def test_a_wrong_secret_stops_up_before_anything_starts(stack, catalog):
    write_secrets(stack.workdir / "secrets.yaml", "not-the-secret")
    result = stack.cli("up", timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "catalog.oauth2_server_uri" in result.stderr and "token" in result.stderr, result.stderr
    assert "not-the-secret" not in result.stdout + result.stderr
    assert not (stack.run_dir / "pids").exists() or not list((stack.run_dir / "pids").glob("*.pid"))
    assert catalog.front.refused_logins[-1] == {"grant_type": "client_credentials", "client_id": CLIENT_ID,
                                                "scope": SCOPE}


def test_up_checks_the_catalog_and_runs_none_of_its_own(stack, catalog):
    write_secrets(stack.workdir / "secrets.yaml", SECRET)
    result = stack.must("up")
    assert f"external catalog at http://127.0.0.1:{FRONT_PORT}: token, /v1/config, namespace sagaz ok" \
        in result.stderr, result.stderr
    states = stack.status()
    assert s.REST_CATALOG not in states and s.CATALOG_DB not in states, states
    assert not (stack.run_dir / "data" / s.REST_CATALOG).exists()


def test_create_tables_and_doctor_go_through_the_catalog(stack):
    stack.must("create-tables")
    report = json.loads(stack.must("doctor", "--json").stdout)
    assert report["ok"] is True, report
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["probe event Fluss → Iceberg → Trino"]["status"] == "pass", report
    assert "external catalog answers /v1/config" in checks["iceberg rest catalog"]["detail"], checks
    assert "OAuth2 token accepted" in checks["iceberg rest catalog"]["detail"], checks


def test_thousand_events_reach_iceberg_and_trino(stack):
    settings = stack.settings
    batch = f"ext-{uuid.uuid4().hex[:8]}"
    sent = saga_events(batch)
    asyncio.run(write_events(settings, sent))
    assert_same_content(sent, wait_for_iceberg(settings, batch, EVENTS))
    assert trino_count(settings, batch) == EVENTS


def test_every_client_logged_in(stack, catalog):
    """Every request the catalog served carried a token it issued; the callers include Iceberg's Java client in
    Trino (its own Iceberg version) and in Fluss, and the CLI's and lake maintenance's Python (pyiceberg, urllib)."""
    deadline = time.monotonic() + 120  # lake maintenance reads the table's shape once a minute
    while time.monotonic() < deadline and not any("Python-urllib" in c for c in catalog.front.clients):
        time.sleep(5)
    agents = dict(catalog.front.clients)
    java = {a for a in agents if a.startswith("Apache Iceberg")}
    assert len(java) >= 2, agents  # Trino 476 bundles Iceberg 1.9.1; Fluss's lake plugin its own
    assert any("PyIceberg" in a or "python" in a.lower() for a in agents), agents
    assert catalog.front.unauthorized == 0, agents
    assert catalog.front.forwarded["POST /v1/namespaces"] > 0  # tiering commits (and table creation)


def test_no_log_or_command_line_holds_the_secret(stack):
    logs = log_files(stack.run_dir)
    assert len(logs) >= 8, sorted(map(str, logs))
    assert [str(p) for p in logs if SECRET in p.read_text(errors="replace")] == []
    listed = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                listed.append((proc / "cmdline").read_bytes().decode(errors="replace"))
            except OSError:
                continue
    assert not [c for c in listed if SECRET in c]
    # The files that must hold it are the stack's own and private (0600).
    holders = [p for p in (stack.run_dir / "config").rglob("*") if p.is_file() and SECRET in p.read_text()]
    assert holders and all(os.stat(p).st_mode & 0o077 == 0 for p in holders), holders


def test_down_purge_leaves_the_external_catalog_alone(stack, catalog):
    stack.must("down", "--purge")
    assert not stack.run_dir.exists()
    assert catalog.process is not None and catalog.process.poll() is None  # not ours to stop
