"""The acceptance check of "compose target proven on a real Docker Engine": `sagaz-lakehouse up --target compose`,
`create-tables` and `doctor` (its probe event going Fluss → Iceberg → Trino) on the stand-in images, as a user runs
them, with host ports moved to 3xxxx.

It cannot pass with the current rendering, for two known reasons (see the strict xfail): the create-bucket service
still uses quay.io/minio/mc, for which no image exists here (the test refuses to let compose try a registry), and
`doctor` checks ZooKeeper at 127.0.0.1:<ports.zookeeper>, which the compose file does not publish. Strict: once
both are fixed the test passes, which fails the run until the marker is removed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import OVERRIDES, PORTS, must, run

from sagaz_lakehouse import config
from sagaz_lakehouse.targets import compose as target

pytestmark = pytest.mark.containers

E2E_PROJECT = "sagaz-containers-e2e"
FLAGS = ["--target", "compose", "--set", f"project={E2E_PROJECT}",
         *(arg for key, value in PORTS.items() for arg in ("--set", f"ports.{key}={value}"))]


def cli(workdir: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGAZ_LAKEHOUSE_S3_")}
    return subprocess.run([sys.executable, "-m", "sagaz_lakehouse", *args, *FLAGS], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.xfail(strict=True, reason="compose rendering: create-bucket still needs quay.io/minio/mc, and doctor "
                                       "checks ZooKeeper on a port compose does not publish")
def test_up_create_tables_doctor(engine, tmp_path):
    settings = config.load(None, {**OVERRIDES, "project": E2E_PROJECT}, environ={})
    images = sorted({svc["image"] for svc in target.project(settings)["services"].values()})
    missing = [image for image in images if run(["docker", "image", "inspect", image]).returncode != 0]
    if missing:
        pytest.fail(f"no local image for {missing} (scripts/build-images.py builds stand-ins for the others); "
                    "not starting compose, which would try a registry", pytrace=False)
    try:
        must(cli(tmp_path, "up", "--timeout", "400"), "sagaz-lakehouse up --target compose")
        must(cli(tmp_path, "create-tables"), "sagaz-lakehouse create-tables")
        report = must(cli(tmp_path, "doctor"), "sagaz-lakehouse doctor")
        assert "all checks passed" in report.stdout + report.stderr
    finally:
        cli(tmp_path, "down", "--purge", timeout=300)
