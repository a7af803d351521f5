"""`catalog.kind: external` on a real Docker Engine: the containers use a catalog outside the compose project.

The catalog is the stand-in of tests/catalog_standin.py (Iceberg's REST server behind a token-checking front, named
as such), run on this host and reached by the containers through the engine's bridge address, which the host owns
too: one `catalog.uri` for both, as the README asks of a real catalog. A wrong secret stops `up` with exit 2 before
any container exists; with the right one the project runs no catalog container, and `create-tables` and `doctor`
pass (its probe event goes Fluss → tiering → Iceberg → Trino, each through the catalog with a token); no container's
configuration shows the secret; `down --purge`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import yaml
from catalog_standin import TOKEN_PATH, ExternalCatalog, running
from conftest import PORTS, Stack, bridge_gateway, run
from support import suite_port

from sagaz_lakehouse import config
from sagaz_lakehouse import stack as s

PROJECT = "sagaz-ct-external"
CLIENT_ID = "sagaz-compose-e2e"
SCOPE = "PRINCIPAL_ROLE:ALL"
SECRET = "compose-e2e-0b3c8d1f9a"
WAREHOUSE = "s3://sagaz-lakehouse/warehouse"
FRONT_PORT = suite_port("compose")


def write_secrets(path, secret: str) -> None:
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump({"s3_access_key": config.DEV_CREDENTIALS.access_key,
                                    "s3_secret_key": config.DEV_CREDENTIALS.secret_key,
                                    "catalog_credential": f"{CLIENT_ID}:{secret}"}))


@pytest.fixture(scope="module")
def catalog(engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExternalCatalog]:
    workdir = tmp_path_factory.mktemp("compose-external-catalog")
    yield from running(workdir, FRONT_PORT, PORTS["minio"], CLIENT_ID, SECRET, SCOPE, WAREHOUSE)


@pytest.fixture(scope="module")
def stack(catalog: ExternalCatalog, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("compose-external")
    uri = f"http://{bridge_gateway()}:{FRONT_PORT}"
    overrides = {"catalog.kind": "external", "catalog.uri": uri, "catalog.warehouse": WAREHOUSE,
                 "catalog.oauth2_server_uri": uri + TOKEN_PATH, "catalog.scope": SCOPE,
                 "secrets.file": str(workdir / "secrets.yaml"), "maintenance.schedule": "off"}
    made = Stack(workdir, PROJECT, overrides)
    made.purge()
    yield made
    made.purge()


def test_a_wrong_secret_stops_up_before_any_container_exists(stack, catalog):
    write_secrets(stack.workdir / "secrets.yaml", "not-the-secret")
    result = stack.cli("up", timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "catalog.oauth2_server_uri" in result.stderr, result.stderr
    assert stack.containers() == []
    assert catalog.front.refused_logins


def test_the_project_runs_no_catalog_and_tiers_through_the_external_one(stack, catalog):
    write_secrets(stack.workdir / "secrets.yaml", SECRET)
    stack.must("up", "--timeout", "600")
    services = stack.services()
    assert s.REST_CATALOG not in services and s.CATALOG_DB not in services, services
    stack.tables_and_doctor()
    assert catalog.front.unauthorized == 0
    java = {a for a in catalog.front.clients if a.startswith("Apache Iceberg")}
    assert len(java) >= 2, dict(catalog.front.clients)  # Trino's Iceberg and Fluss's, from their containers


def test_no_container_configuration_shows_the_secret(stack):
    inspected = json.dumps(stack.containers())
    assert SECRET not in inspected.replace(f"CATALOG_CREDENTIAL={CLIENT_ID}:{SECRET}", "")  # only that variable
    for c in stack.containers():
        if c["State"]["Status"] == "running":
            log = run(["docker", "logs", c["Id"]])
            assert SECRET not in log.stdout + log.stderr, c["Name"]


def test_down_purge(stack):
    stack.must("down", "--purge", timeout=300)
    assert stack.containers() == [] and stack.volumes() == []
