"""End to end on the local target with `object_store.kind: external`: an object store the stack does not run.

The test starts a SeaweedFS server built from the Go module proxy itself (tests/external_store.py, shared with the
compose suite, which runs MinIO), outside any stack, on ports of its own block, with the lake bucket, one user per
role with its own AWS policy, and the role Fluss assumes (what an operator does once with their store's tools), and
hands the stack only the endpoint and each role's keys. First the refusals: a missing bucket, a wrong key and a
role without write access each make `up` exit 2, naming what is wrong, before anything starts. Then the stack: no
object store among its components, `create-tables`, `doctor`, and 1,000 events through Fluss into Iceberg (read with
the reader's keys) and Trino.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest
import yaml
from external_store import (
    BUCKET,
    REGION,
    ExternalStore,
    assert_refusals,
    assert_roles_and_sts_hold,
    no_secret_in,
    running,
    secrets_file,
)
from saga_data import EVENTS, assert_same_content, saga_events, trino_count, wait_for_iceberg, write_events
from support import SuiteStack, init_with_ports, log_files, suite_port, suite_ports

from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components import fluss

SUITE = "external-store"
# SeaweedFS here, MinIO in the compose suite: two real S3 servers behind `object_store.kind: external`, and
# SeaweedFS, the candidate bundled store (issue 26), proven under Fluss (S3A and STS AssumeRole), Flink's tiering,
# the REST catalog (Iceberg's S3FileIO), Trino's native S3 and pyiceberg.
STORE_KIND = "seaweedfs"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    yield from running(tmp_path_factory.mktemp("external-store"), "127.0.0.1", suite_port(SUITE), STORE_KIND)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, store: ExternalStore) -> Path:
    workdir = tmp_path_factory.mktemp("external-stack")
    settings_file = init_with_ports(workdir, suite_ports(SUITE))
    values = yaml.safe_load(settings_file.read_text())
    values["object_store"] = {"kind": "external", "endpoint": store.endpoint, "region": REGION}
    values["lake"] = {"bucket": BUCKET}
    values["secrets"] = {"file": "secrets.yaml"}
    settings_file.write_text(yaml.safe_dump(values))
    store.provision(SuiteStack(workdir).settings)
    secrets_file(workdir / "secrets.yaml", store.role_keys())
    return workdir


def test_up_refuses_a_missing_bucket_a_wrong_key_and_a_role_without_write_before_starting_anything(workdir, store):
    def refused(keys: dict[str, tuple[str, str]], *sets: str) -> str:
        """`up` with these keys (and settings): exit 2, and no process of the stack started. Returns stderr."""
        name = f"secrets-{uuid.uuid4().hex[:6]}.yaml"
        secrets_file(workdir / name, keys)
        stack = SuiteStack(workdir, {"secrets.file": name, **dict(item.split("=", 1) for item in sets)})
        result = stack.cli("up", timeout=120)
        assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        pids = stack.run_dir / "pids"
        assert not pids.exists() or not any(pids.iterdir()), sorted(p.name for p in pids.iterdir())
        assert no_secret_in(result.stderr, store, keys)
        return result.stderr

    assert_refusals(store, refused, SuiteStack(workdir).settings.lake.warehouse)
    # SeaweedFS checks the role Fluss asks for (MinIO ignores its name): one it does not have is refused by name.
    arn = "arn:aws:iam::000000000000:role/no-such-role"
    no_role = refused(store.role_keys(), f"object_store.sts_role_arn={arn}")
    assert f"object_store.sts_role_arn: the fluss role cannot assume role {arn} at {store.endpoint}" in no_role


@pytest.fixture(scope="module")
def stack(workdir: Path, store: ExternalStore):
    stack = SuiteStack(workdir)
    try:
        up = stack.must("up")
        assert "object store: bucket team-lake" in up.stderr  # the probe ran and passed
        assert f"role {fluss.ASSUMED_ROLE_ARN} at {store.endpoint}: assumed by fluss" in up.stderr  # STS too
        yield stack
    finally:
        stack.down()


def test_the_stack_runs_no_object_store_and_tiers_into_the_external_one(stack, store):
    states = stack.status()
    assert s.MINIO not in states and s.CREATE_BUCKET not in states, states
    assert {state for name, state in states.items() if name != s.SUBMIT_TIERING} == {"healthy"}, states
    stack.must("create-tables")
    doctor = stack.must("doctor", timeout=600)
    assert "object store" in doctor.stdout and f"external store {store.endpoint}" in doctor.stdout

    settings, credentials = stack.settings, stack.credentials
    batch = f"external-{uuid.uuid4().hex[:8]}"
    sent = saga_events(batch)
    asyncio.run(write_events(settings, sent))
    rows = wait_for_iceberg(settings, batch, EVENTS, credentials=credentials)
    assert_same_content(sent, rows)
    assert trino_count(settings, batch) == EVENTS
    # the lake's files are in the operator's store, written under the lake role's prefix
    from pyarrow import fs

    lake = fs.S3FileSystem(access_key=store.keys("lake")[0], secret_key=store.keys("lake")[1],
                           endpoint_override=f"127.0.0.1:{store.port}", scheme="http", region=REGION,
                           force_virtual_addressing=False)
    files = lake.get_file_info(fs.FileSelector(f"{BUCKET}/{settings.lake.warehouse}", recursive=True))
    assert any(f.path.endswith(".parquet") for f in files)
    print(stack.log_tails("lake-maintenance"))  # evidence (-s): what maintenance, through Trino's reader, did


def test_a_session_of_the_role_fluss_assumes_has_only_the_fluss_grants(stack, store):
    """What Fluss hands its clients (STS AssumeRole at the store): SeaweedFS applies the role's policy, so a session
    writes under fluss-remote/ (the probe) but cannot write in the warehouse."""
    assert_roles_and_sts_hold(store)


def test_no_log_file_holds_a_role_secret(stack):
    """The roles' secret keys reach processes only in 0600 files and the environment: no log shows one."""
    logs = log_files(stack.run_dir)
    assert len(logs) >= 8, sorted(map(str, logs))
    values = stack.credentials.secret_values()
    # the three roles' secret keys and the catalog database's password derived from them; no root key, no passwords
    assert len(values) == 4
    assert [str(p) for p in logs for value in values if value in p.read_text(errors="replace")] == []
    configs = [p for p in (stack.run_dir / "config").rglob("*") if p.is_file()
               and any(value in p.read_text(errors="replace") for value in values)]
    assert configs and all(os.stat(p).st_mode & 0o077 == 0 for p in configs), configs
