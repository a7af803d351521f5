"""An object store of the operator's for `object_store.kind: external`, outside any stack: a real server built from
the Go module proxy (not a stand-in), started by the test. Importable as ``external_store`` (tests/ is on sys.path).

Two kinds (:data:`STORES`): MinIO (users and policies through its admin API, with the project's own code:
tasks.create_bucket, tasks.ensure_identities) and SeaweedFS, the candidate bundled store of issue 26 (users, their AWS
policies and the role Fluss assumes in one JSON file). Either way the test does what an operator does once with their
store's tools: the lake bucket and one user per role; the stack gets only the endpoint and each role's keys, and the
root keys stay with the test. Used by the local target's e2e with SeaweedFS
(tests/local/stacks/test_external_store_on_stack.py) and the compose one with MinIO on a real Docker Engine
(tests/compose/engine/test_compose_external_store.py), with the same refusals (:func:`assert_refusals`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from support import cache_dir

from sagaz_lakehouse import config, identities, store_probe, tasks, versions
from sagaz_lakehouse.components import fluss
from sagaz_lakehouse.targets.local import distributions

REGION = "eu-central-1"
BUCKET = "team-lake"
ABSENT = "forgotten-lake"  # named in the absent-* users' policies, never created


class ExternalStore:
    """An object store of the operator's on ``host:port``, reached at ``endpoint``, with root keys ``root``. The
    subclasses are two real servers built from the Go module proxy: :class:`MinioStore`, :class:`SeaweedStore`."""

    kind = ""

    def __init__(self, folder: Path, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.endpoint = f"http://{host}:{port}"
        self.root = ("operator-root", secrets.token_hex(20))
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        raise NotImplementedError

    def provision(self, settings: config.Settings) -> None:
        """The bucket and one user per role (access key sagaz-<role>) with the grants the stack needs; besides
        them, for the refusals, ``lake-readonly`` (the lake role without write) and ``absent-<role>`` users whose
        policies name the bucket :data:`ABSENT`, which is never created (a bucket the operator forgot)."""
        raise NotImplementedError

    def keys(self, role: str) -> tuple[str, str]:
        return tasks.IDENTITY_PREFIX + role, tasks.identity_secret(self.root[1], role)

    def role_keys(self, prefix: str = "") -> dict[str, tuple[str, str]]:
        """Every role's keys (those of the ``prefix``-<role> users with a prefix)."""
        return {role: self.keys(f"{prefix}-{role}" if prefix else role) for role in config.S3_ROLES}

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None

    @property
    def log(self) -> Path:
        return self.folder / f"{self.kind}.log"

    def _launch(self, command: list[str], env: dict[str, str], *ready: str) -> None:
        """Start ``command`` (its output appended to :attr:`log`) and wait until each ``ready`` URL answers 200."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        waiting = list(ready)
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(waiting[0], timeout=2):  # noqa: S310
                    waiting.pop(0)
                    if not waiting:
                        return
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"the test's {self.kind} did not start:\n{self.log.read_text()[-3000:]}", pytrace=False)

    def _grants(self, settings: config.Settings) -> dict[str, list[tuple[str, str]]]:
        grants = {role: list(g) for role, g in identities.s3_grants(settings).items()}
        grants["lake-readonly"] = [(settings.lake.warehouse, "r")]
        return grants


def cached_binary(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: `make tools` (or `make test`) builds it first", pytrace=False)
    return path


class MinioStore(ExternalStore):
    """The project's cached MinIO server; users and policies through its admin API (its console on port + 1)."""

    kind = "minio"

    def start(self) -> None:
        # No region of its own (MinIO then takes any signing region): Fluss 0.9.1's clients sign for the region
        # their SDK reads from the endpoint's host name (README, Bring your own object store).
        binary = cached_binary(distributions.minio_binary(cache_dir()))
        env = {**os.environ, "MINIO_ROOT_USER": self.root[0], "MINIO_ROOT_PASSWORD": self.root[1],
               "HOME": str(self.folder)}
        self._launch([str(binary), "server", str(self.folder / "data"), "--address", f"{self.host}:{self.port}",
                      "--console-address", f"{self.host}:{self.port + 1}"], env,
                     f"{self.endpoint}/minio/health/ready")

    def provision(self, settings: config.Settings) -> None:
        grants = self._grants(settings)
        tasks.create_bucket(self.endpoint, BUCKET, REGION, *self.root, time.monotonic() + 60)
        tasks.ensure_identities(self.endpoint, BUCKET, REGION, *self.root, grants)
        tasks.ensure_identities(self.endpoint, ABSENT, REGION, *self.root,
                                {f"absent-{role}": list(g) for role, g in grants.items() if role in config.S3_ROLES})


class SeaweedStore(ExternalStore):
    """SeaweedFS (`weed server -s3`: master, volume server, filer and S3 gateway in one process), the candidate
    bundled store of issue 26. Users, their AWS policies and the role Fluss assumes (STS AssumeRole) are one JSON
    file, passed as both ``-s3.config`` and ``-s3.iam.config`` as upstream's STS test does; the IAM part is read
    only at start, so :meth:`provision` restarts the server with the new file. Ports: S3 on ``port``, then master,
    volume and filer on port + 1..3 (each one's gRPC at + 10000, upstream's default)."""

    kind = "seaweedfs"

    def __init__(self, folder: Path, host: str, port: int) -> None:
        super().__init__(folder, host, port)
        self.config_file = folder / "s3.json"
        self.policies: dict[str, dict[str, object]] = {}

    def start(self) -> None:
        binary = cached_binary(distributions.seaweedfs_binary(cache_dir()))
        (self.folder / "data").mkdir(exist_ok=True)
        self._write_config()
        env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}  # else an admin
        self._launch([str(binary), "-logtostderr=true", "server", f"-dir={self.folder / 'data'}",
                      "-volume.max=0", "-master.volumeSizeLimitMB=1024",  # what upstream's image entrypoint adds
                      *server_args(self.host, self.host, self.port, str(self.config_file))], env, *self._ready())

    def provision(self, settings: config.Settings) -> None:
        grants = self._grants(settings)
        self.policies = {tasks.IDENTITY_PREFIX + role: tasks.role_policy(BUCKET, g) for role, g in grants.items()}
        self.policies.update({f"{tasks.IDENTITY_PREFIX}absent-{role}": tasks.role_policy(ABSENT, g)
                              for role, g in grants.items() if role in config.S3_ROLES})
        self._kill()  # nothing is stored yet: a kill loses nothing and skips a 10-25 s stop
        # A fresh cluster elects its master at once; a restarted one waits for the raft election timeout (10 s).
        shutil.rmtree(self.folder / "data", ignore_errors=True)
        self.start()
        tasks.create_bucket(self.endpoint, BUCKET, REGION, *self.root, time.monotonic() + 60)

    def _write_config(self) -> None:
        self.config_file.touch(mode=0o600)
        self.config_file.write_text(json.dumps(seaweedfs_config(self.root, self.policies), indent=2))

    def _ready(self) -> tuple[str, str]:
        return f"{self.endpoint}/healthz", f"http://{self.host}:{self.port + 1}/readyz"  # readyz: a raft leader

    def _kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(30)


class SeaweedContainer(SeaweedStore):
    """The same store in a container of the SeaweedFS image (images/seaweedfs, a stand-in for
    chrislusf/seaweedfs built from the same binary), started through its entrypoint as upstream's would be; S3 and
    the master published on ``host``'s ``port`` and ``port + 1``; the config file mounted read-only. Needs the
    test's Docker Engine."""

    kind = "seaweedfs-container"

    def __init__(self, folder: Path, host: str, port: int) -> None:
        super().__init__(folder, host, port)
        self.container = f"sagaz-test-seaweedfs-{secrets.token_hex(4)}"

    def start(self) -> None:
        self._write_config()
        os.chown(self.config_file, 1000, 1000)  # the image's seaweed user reads it (still 0600)
        inside, s3 = "/etc/seaweedfs/s3.json", 8333  # upstream's S3 port, the master's after it (server_args)
        self._launch(["docker", "run", "--rm", "--name", self.container, "-p", f"{self.host}:{self.port}:{s3}",
                      "-p", f"{self.host}:{self.port + 1}:{s3 + 1}", "-v", f"{self.config_file}:{inside}:ro",
                      versions.SEAWEEDFS.image, "server", *server_args("127.0.0.1", "0.0.0.0", s3, inside)],  # noqa: S104
                     dict(os.environ), *self._ready())

    def stop(self) -> None:
        subprocess.run(["docker", "stop", "-t", "30", self.container], capture_output=True, timeout=60)
        super().stop()

    def _kill(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.container], capture_output=True, timeout=60)
        super()._kill()


def server_args(ip: str, bind: str, s3: int, config_file: str) -> list[str]:
    """`weed server -s3` with every port explicit (master, volume and filer after S3; gRPC at + 10000, upstream's
    default), nothing else listening (no Iceberg or Lance endpoints), no telemetry, and a volume server that stops at
    once."""
    return [f"-ip={ip}", f"-ip.bind={bind}", "-s3", f"-s3.port={s3}", f"-master.port={s3 + 1}",
            f"-volume.port={s3 + 2}", f"-filer.port={s3 + 3}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            f"-s3.config={config_file}", f"-s3.iam.config={config_file}", "-master.telemetry=false",
            "-volume.preStopSeconds=0"]


# The role Fluss assumes (fluss.ASSUMED_ROLE_ARN, the project's default sts_role_arn) and who may assume it: the
# fluss role's user, as SeaweedFS names it in a trust policy (arn:aws:iam::000000000000:user/<identity name>).
FLUSS_USER = tasks.IDENTITY_PREFIX + "fluss"


def seaweedfs_config(root: tuple[str, str], policies: dict[str, dict[str, object]]) -> dict[str, object]:
    """The identities (the operator's admin with the root keys; one user per entry of ``policies``, named as its
    access key, whose secret derives from the root secret like MinIO's users), the policies, and the STS part: a
    signing key (base64, at least 16 bytes) and the role Fluss assumes, which carries the fluss user's policy."""
    secret_of = {name: tasks.identity_secret(root[1], name.removeprefix(tasks.IDENTITY_PREFIX)) for name in policies}
    users = [{"name": name, "credentials": [{"accessKey": name, "secretKey": secret_of[name]}],
              "policyNames": [f"policy-{name}"]} for name in policies]
    signing_key = hmac.new(root[1].encode(), b"sts signing key", hashlib.sha256).digest()
    roles = []
    if FLUSS_USER in policies:
        arn = fluss.ASSUMED_ROLE_ARN
        roles.append({"roleName": arn.rsplit("/", 1)[1], "roleArn": arn, "attachedPolicies": [f"policy-{FLUSS_USER}"],
                      "trustPolicy": {"Version": "2012-10-17", "Statement": [{
                          "Effect": "Allow", "Action": ["sts:AssumeRole"],
                          "Principal": {"AWS": f"arn:aws:iam::000000000000:user/{FLUSS_USER}"}}]}})
    return {
        "identities": [{"name": root[0], "credentials": [{"accessKey": root[0], "secretKey": root[1]}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}, *users],
        "policies": [{"name": f"policy-{name}", "document": document} for name, document in policies.items()],
        "sts": {"tokenDuration": "1h", "maxSessionLength": "12h", "issuer": "operator-seaweedfs",
                "signingKey": base64.b64encode(signing_key).decode()},
        "policy": {"defaultEffect": "Deny", "storeType": "memory"},
        "roles": roles,
    }


STORES: dict[str, type[ExternalStore]] = {"minio": MinioStore, "seaweedfs": SeaweedStore}


def running(folder: Path, host: str, port: int, kind: str = "minio") -> Iterator[ExternalStore]:
    """A module fixture's body: the store of ``kind`` (:data:`STORES`) started for the module, stopped after it."""
    store = STORES[kind](folder, host, port)
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


def external_settings(store: ExternalStore) -> config.Settings:
    """Default settings pointed at ``store`` (kind external, its endpoint, the test region and bucket)."""
    from sagaz_lakehouse import load_settings

    return load_settings(None, {"object_store.kind": "external", "object_store.endpoint": store.endpoint,
                                "object_store.region": REGION, "lake.bucket": BUCKET}, environ={})


def assert_roles_and_sts_hold(store: ExternalStore) -> None:
    """`up`'s probe passes with each role's keys, STS included, and a session of the role Fluss assumes is refused a
    write outside the fluss grants (SeaweedFS applies the role's policy)."""
    settings = external_settings(store)
    credentials = config.Credentials("", "", role_keys=tuple((r, *keys) for r, keys in store.role_keys().items()))
    done = store_probe.preflight(settings, credentials)
    assert f"role {fluss.ASSUMED_ROLE_ARN} at {store.endpoint}: assumed by fluss" in done[-1], done
    prober = store_probe.Prober(settings, credentials)
    status, body = prober.assume(store.endpoint, fluss.ASSUMED_ROLE_ARN)
    session = store_probe.session_keys(body)
    assert status == 200 and session is not None, body
    denied = prober.session_call(session, "PUT", f"{settings.lake.warehouse}/session-probe", b"x")
    assert (denied.status, denied.code) == (403, "AccessDenied"), denied
