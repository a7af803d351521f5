"""An object store of the operator's for `object_store.kind: external`, outside any stack: the project's cached MinIO
server (the real one, not a stand-in), started by the test. Importable as ``external_store`` (tests/ is on sys.path).

What an operator does once with their store's tools, the test does with the project's own admin-API code
(tasks.create_bucket, tasks.ensure_identities): the lake bucket and one user per role; the stack gets only the
endpoint and each role's keys. The root keys stay with the test. Used by the local target's e2e
(tests/local/stacks/test_external_store_on_stack.py) and the compose one on a real Docker Engine
(tests/compose/engine/test_compose_external_store.py), with the same refusals (:func:`assert_refusals`).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from support import cache_dir

from sagaz_lakehouse import config, identities, tasks, versions

REGION = "eu-central-1"
BUCKET = "team-lake"
ABSENT = "forgotten-lake"  # named in the absent-* users' policies, never created


class ExternalStore:
    """A MinIO server of the operator's on ``host:port`` (its console on port + 1)."""

    def __init__(self, folder: Path, host: str, port: int) -> None:
        self.binary = cache_dir() / "bin" / f"minio-{versions.MINIO.version}"
        if not self.binary.exists():
            pytest.fail(f"{self.binary} is missing: `make up` (or `make test`) builds it first", pytrace=False)
        self.host, self.port = host, port
        self.endpoint = f"http://{host}:{port}"
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
            [str(self.binary), "server", str(self.folder / "data"), "--address", f"{self.host}:{self.port}",
             "--console-address", f"{self.host}:{self.port + 1}"], env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.endpoint}/minio/health/ready", timeout=2):  # noqa: S310
                    return
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"the test's MinIO did not start:\n{(self.folder / 'minio.log').read_text()[-3000:]}",
                    pytrace=False)

    def provision(self, settings: config.Settings) -> None:
        """The bucket and one user per role (access key sagaz-<role>) with the grants the stack needs; besides
        them, for the refusals, ``lake-readonly`` (the lake role without write) and ``absent-<role>`` users whose
        policies name the bucket :data:`ABSENT`, which is never created (a bucket the operator forgot)."""
        grants = {role: list(g) for role, g in identities.s3_grants(settings).items()}
        grants["lake-readonly"] = [(settings.lake.warehouse, "r")]
        tasks.create_bucket(self.endpoint, BUCKET, REGION, *self.root, time.monotonic() + 60)
        tasks.ensure_identities(self.endpoint, BUCKET, REGION, *self.root, grants)
        tasks.ensure_identities(self.endpoint, ABSENT, REGION, *self.root,
                                {f"absent-{role}": list(g) for role, g in grants.items() if role in config.S3_ROLES})

    def keys(self, role: str) -> tuple[str, str]:
        return tasks.IDENTITY_PREFIX + role, tasks.identity_secret(self.root[1], role)

    def role_keys(self, prefix: str = "") -> dict[str, tuple[str, str]]:
        """Every role's keys (those of the ``prefix``-<role> users with a prefix)."""
        return {role: self.keys(f"{prefix}-{role}" if prefix else role) for role in config.S3_ROLES}

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)


def running(folder: Path, host: str, port: int) -> Iterator[ExternalStore]:
    """A module fixture's body: the store started for the module, stopped after it."""
    store = ExternalStore(folder, host, port)
    try:
        store.start()
        yield store
    finally:
        store.stop()


def secrets_file(path: Path, keys: dict[str, tuple[str, str]]) -> Path:
    """A 0600 secrets.file with each role's keys (s3_<role>_access_key, s3_<role>_secret_key)."""
    values = {}
    for role, (access, secret) in keys.items():
        values[f"s3_{role}_access_key"], values[f"s3_{role}_secret_key"] = access, secret
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(yaml.safe_dump(values))
    return path


Refused = Callable[..., str]  # refused(keys, *"setting=value") -> stderr of an `up` that exited 2, nothing started


def assert_refusals(store: ExternalStore, refused: Refused, warehouse: str) -> None:
    """`up` exits 2 naming what is wrong, before anything starts, for a missing bucket (and a name no role may
    list), a wrong key, and a role without write. ``refused`` runs `up` and checks that nothing started."""
    good = store.role_keys()
    missing = refused(store.role_keys("absent"), f"lake.bucket={ABSENT}")
    assert f"lake.bucket: bucket {ABSENT} does not exist at {store.endpoint}" in missing
    # A name outside every role's policy: MinIO answers AccessDenied whether or not the bucket exists.
    unknown = refused(good, "lake.bucket=no-such-lake")
    assert "lake.bucket: no role may list bucket no-such-lake" in unknown and "does not exist" in unknown

    wrong = refused({**good, "reader": (good["reader"][0], "not-the-reader-secret")})
    assert "object store, role reader: its secret key is wrong" in wrong and "SignatureDoesNotMatch" in wrong
    assert "role fluss" not in wrong and "role lake" not in wrong  # only the role at fault

    read_only = refused({**good, "lake": store.keys("lake-readonly")})
    assert f"object store, role lake: lacks s3:PutObject on s3://{BUCKET}/{warehouse}/*" in read_only
    assert "AccessDenied" in read_only


def no_secret_in(text: str, store: ExternalStore, keys: dict[str, tuple[str, str]]) -> bool:
    return store.root[1] not in text and all(secret not in text for _, secret in keys.values())
