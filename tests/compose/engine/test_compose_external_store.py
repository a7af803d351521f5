"""`object_store.kind: external` on a real Docker Engine: the containers use an object store outside the project.

The store is the project's cached MinIO server (tests/external_store.py: the real one, started by the test on this
host with the bucket and one user per role made as an operator would), bound to the engine's bridge address, which
the host owns too: one `object_store.endpoint` for the containers and for `up`'s probe, `doctor` and the test's
readers, as the README asks of a real store. A missing bucket, a wrong key and a role without write each make `up`
exit 2 before any container, volume or network of the project exists. With the right keys the project runs no
object store (no MinIO, no create-bucket task), and `create-tables`, `doctor` and 1,000 events reach Iceberg and
Trino, the lake's files in the operator's bucket; no container's configuration or log shows a secret outside the
variables that carry it; `down --purge`.

Ports: the store on the compose block's suite_port + 2 (its console + 3); the external catalog's front has
suite_port (README, port blocks).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Stack, bridge_gateway, run
from external_store import BUCKET, REGION, ExternalStore, assert_refusals, no_secret_in, running, secrets_file
from saga_data import EVENTS, assert_same_content, saga_events, trino_count, wait_for_iceberg, write_events
from support import suite_port

from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components import fluss
from sagaz_lakehouse.targets.compose.layout import JARS_DIR

PROJECT = "sagaz-ct-external-store"
STORE_PORT = suite_port("compose") + 2
SECRET_VARIABLE = re.compile(r"(SECRET|PASSWORD)")  # the names of the variables that carry a secret, by design


@pytest.fixture(scope="module")
def store(engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExternalStore]:
    yield from running(tmp_path_factory.mktemp("compose-external-store"), bridge_gateway(), STORE_PORT)


@pytest.fixture(scope="module")
def stack(store: ExternalStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("compose-external-store-stack")
    overrides = {"object_store.kind": "external", "object_store.endpoint": store.endpoint,
                 "object_store.region": REGION, "lake.bucket": BUCKET,
                 "secrets.file": str(workdir / "secrets.yaml"), "maintenance.schedule": "off"}
    made = Stack(workdir, PROJECT, overrides)
    store.provision(made.settings)
    secrets_file(workdir / "secrets.yaml", store.role_keys())
    made.purge()
    yield made
    made.purge()


def test_up_refuses_a_missing_bucket_a_wrong_key_and_a_role_without_write_before_any_container_exists(stack, store):
    def refused(keys: dict[str, tuple[str, str]], *sets: str) -> str:
        path = stack.workdir / f"secrets-{uuid.uuid4().hex[:6]}.yaml"
        secrets_file(path, keys)
        attempt = Stack(stack.workdir, PROJECT, {**stack.overrides, "secrets.file": str(path),
                                                 **dict(item.split("=", 1) for item in sets)})
        result = attempt.cli("up", timeout=120)
        assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert attempt.containers() == [] and attempt.volumes() == [] and attempt.networks() == []
        assert no_secret_in(result.stdout + result.stderr, store, keys)
        return result.stderr

    assert_refusals(store, refused, stack.settings.lake.warehouse)


def test_the_project_runs_no_object_store_and_tiers_into_the_external_one(stack, store):
    up = stack.must("up", "--timeout", "600")
    assert f"object store: bucket {BUCKET} at {store.endpoint}" in up.stderr  # the probe ran and passed
    # and the STS call Fluss will make (MinIO takes any role name and hands out the fluss user's grant)
    assert f"role {fluss.ASSUMED_ROLE_ARN} at {store.endpoint}: assumed by fluss" in up.stderr
    services = stack.services()
    assert s.MINIO not in services and s.CREATE_BUCKET not in services, services
    checks = stack.tables_and_doctor()
    assert f"external store {store.endpoint}" in checks["object store"]["detail"], checks["object store"]

    settings = stack.settings
    batch = f"ct-external-{uuid.uuid4().hex[:8]}"
    sent = saga_events(batch)
    asyncio.run(write_events(settings, sent))
    try:
        rows = wait_for_iceberg(settings, batch, EVENTS, credentials=stack.credentials)
    except pytest.fail.Exception as exc:
        raise AssertionError(f"{exc}\n" + "\n".join(stack.tiering_logs())) from None
    assert_same_content(sent, rows)
    assert trino_count(settings, batch) == EVENTS
    from pyarrow import fs  # the lake's files are in the operator's bucket, under the warehouse prefix

    access, secret = store.keys("reader")
    reader = fs.S3FileSystem(access_key=access, secret_key=secret, endpoint_override=f"{store.host}:{store.port}",
                             scheme="http", region=REGION, force_virtual_addressing=False)
    files = reader.get_file_info(fs.FileSelector(f"{BUCKET}/{settings.lake.warehouse}", recursive=True))
    assert any(f.path.endswith(".parquet") for f in files)


def test_no_container_configuration_or_log_shows_a_secret(stack, store):
    containers = stack.containers()
    assert containers
    values = (*stack.credentials.secret_values(), store.root[1])
    assert len(values) == 5  # the three roles' secret keys, the catalog database's password, the store's root
    carriers = set()
    for c in containers:
        env = c["Config"]["Env"] or []
        carrying = {entry.split("=", 1)[0] for entry in env if any(value in entry for value in values)}
        assert all(SECRET_VARIABLE.search(name) for name in carrying), (c["Name"], sorted(carrying))
        carriers |= carrying
        rest = json.dumps({**c, "Config": {**c["Config"], "Env": [e for e in env if e.split("=", 1)[0] not in
                                                                  carrying]}})
        assert not [value for value in values if value in rest], c["Name"]
        if c["State"]["Status"] == "running":
            log = run(["docker", "logs", c["Id"]])
            assert not [value for value in values if value in log.stdout + log.stderr], c["Name"]
    assert carriers, "no container got the roles' keys"
    project_dir = stack.workdir / stack.settings.compose.project_dir
    holding = [p for p in Path(project_dir).rglob("*") if p.is_file() and JARS_DIR not in p.parts
               and any(value in p.read_text(errors="replace") for value in values)]
    assert ".env" in [p.name for p in holding] and all(os.stat(p).st_mode & 0o077 == 0 for p in holding), holding


def test_down_purge(stack):
    stack.must("down", "--purge", timeout=300)
    assert stack.containers() == [] and stack.volumes() == [] and stack.networks() == []
