"""End to end on the local target with `object_store.kind: external`: an object store the stack does not run.

The test starts the project's cached MinIO server itself, outside any stack, on a port of its own block, makes the
lake bucket and one user per role with the project's own admin-API code (tasks.create_bucket, tasks.ensure_identities:
what an operator does once with their store's tools), and hands the stack only the endpoint and each role's keys.
First the refusals: a missing bucket, a wrong key and a role without write access each make `up` exit 2, naming
what is wrong, before anything starts. Then the stack: no object store among its components, `create-tables`,
`doctor`, and 1,000 events through Fluss into Iceberg (read with the reader's keys) and Trino.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from saga_data import EVENTS, assert_same_content, saga_events, trino_count, wait_for_iceberg, write_events
from support import SuiteStack, cache_dir, init_with_ports, log_files, suite_port, suite_ports

from sagaz_lakehouse import config, identities, tasks, versions
from sagaz_lakehouse import stack as s

SUITE = "external-store"
REGION = "eu-central-1"
BUCKET = "team-lake"
ABSENT = "forgotten-lake"  # named in policies, never created


class ExternalStore:
    """A MinIO server of the operator's, started here: the root keys stay with the test."""

    def __init__(self, folder: Path) -> None:
        self.binary = cache_dir() / "bin" / f"minio-{versions.MINIO.version}"
        if not self.binary.exists():
            pytest.fail(f"{self.binary} is missing: `make up` (or `make test`) builds it first", pytrace=False)
        self.port = suite_port(SUITE)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.root = ("operator-root", secrets.token_hex(20))
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # No region of its own (MinIO then takes any signing region): Fluss 0.9.1's clients sign for the region
        # their SDK reads from the endpoint's host name (README, Bring your own object store).
        env = {**os.environ, "MINIO_ROOT_USER": self.root[0], "MINIO_ROOT_PASSWORD": self.root[1],
               "HOME": str(self.folder)}
        log = (self.folder / "minio.log").open("wb")
        self.process = subprocess.Popen(
            [str(self.binary), "server", str(self.folder / "data"), "--address", f"127.0.0.1:{self.port}",
             "--console-address", f"127.0.0.1:{self.port + 1}"], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/minio/health/ready", timeout=2):  # noqa: S310
                    return
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"the test's MinIO did not start:\n{(self.folder / 'minio.log').read_text()[-3000:]}",
                    pytrace=False)

    def prepare(self, grants: dict[str, list[tuple[str, str]]]) -> None:
        """What an operator does once: the bucket, and one user per role (access key sagaz-<role>)."""
        tasks.create_bucket(self.endpoint, BUCKET, REGION, *self.root, time.monotonic() + 60)
        tasks.ensure_identities(self.endpoint, BUCKET, REGION, *self.root, grants)

    def users_without_bucket(self, bucket: str, grants: dict[str, list[tuple[str, str]]]) -> None:
        """Users whose policies name ``bucket``, which is never created: a bucket the operator forgot."""
        tasks.ensure_identities(self.endpoint, bucket, REGION, *self.root, grants)

    def keys(self, role: str) -> tuple[str, str]:
        return tasks.IDENTITY_PREFIX + role, tasks.identity_secret(self.root[1], role)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)


def secrets_file(path: Path, keys: dict[str, tuple[str, str]]) -> Path:
    values = {}
    for role, (access, secret) in keys.items():
        values[f"s3_{role}_access_key"], values[f"s3_{role}_secret_key"] = access, secret
    path.write_text(yaml.safe_dump(values))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("external-store")
    server = ExternalStore(folder)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, store: ExternalStore) -> Path:
    workdir = tmp_path_factory.mktemp("external-stack")
    settings_file = init_with_ports(workdir, suite_ports(SUITE))
    values = yaml.safe_load(settings_file.read_text())
    values["object_store"] = {"kind": "external", "endpoint": store.endpoint, "region": REGION}
    values["lake"] = {"bucket": BUCKET}
    values["secrets"] = {"file": "secrets.yaml"}
    settings_file.write_text(yaml.safe_dump(values))
    settings = SuiteStack(workdir).settings
    grants = {role: list(g) for role, g in identities.s3_grants(settings).items()}
    grants["lake-readonly"] = [(settings.lake.warehouse, "r")]  # for the refusal: the lake role without write
    store.prepare(grants)
    store.users_without_bucket(ABSENT, {f"absent-{role}": list(g) for role, g in grants.items()
                                        if role in config.S3_ROLES})
    secrets_file(workdir / "secrets.yaml", {role: store.keys(role) for role in config.S3_ROLES})
    return workdir


def refused(workdir: Path, store: ExternalStore, keys: dict[str, tuple[str, str]], *sets: str) -> str:
    """`up` with these keys (and settings): exit 2, and no process of the stack started. Returns stderr."""
    name = f"secrets-{uuid.uuid4().hex[:6]}.yaml"
    secrets_file(workdir / name, keys)
    stack = SuiteStack(workdir, {"secrets.file": name, **dict(item.split("=", 1) for item in sets)})
    result = stack.cli("up", timeout=120)
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    pids = stack.run_dir / "pids"
    assert not pids.exists() or not any(pids.iterdir()), sorted(p.name for p in pids.iterdir())
    assert store.root[1] not in result.stderr and all(secret not in result.stderr for _, secret in keys.values())
    return result.stderr


def test_up_refuses_a_missing_bucket_a_wrong_key_and_a_role_without_write_before_starting_anything(workdir, store):
    good = {role: store.keys(role) for role in config.S3_ROLES}
    absent = {role: store.keys(f"absent-{role}") for role in config.S3_ROLES}
    missing = refused(workdir, store, absent, f"lake.bucket={ABSENT}")
    assert f"lake.bucket: bucket {ABSENT} does not exist at {store.endpoint}" in missing
    # A name outside every role's policy: MinIO answers AccessDenied whether or not the bucket exists.
    unknown = refused(workdir, store, good, "lake.bucket=no-such-lake")
    assert "lake.bucket: no role may list bucket no-such-lake" in unknown and "does not exist" in unknown

    wrong = refused(workdir, store, {**good, "reader": (good["reader"][0], "not-the-reader-secret")})
    assert "object store, role reader: its secret key is wrong" in wrong and "SignatureDoesNotMatch" in wrong
    assert "role fluss" not in wrong and "role lake" not in wrong  # only the role at fault

    read_only = refused(workdir, store, {**good, "lake": store.keys("lake-readonly")})
    warehouse = SuiteStack(workdir).settings.lake.warehouse
    assert f"object store, role lake: lacks s3:PutObject on s3://{BUCKET}/{warehouse}/*" in read_only
    assert "AccessDenied" in read_only


@pytest.fixture(scope="module")
def stack(workdir: Path, store: ExternalStore):
    stack = SuiteStack(workdir)
    try:
        up = stack.must("up")
        assert "object store: bucket team-lake" in up.stderr  # the probe ran and passed
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
