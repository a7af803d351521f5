"""Container tests on a real Docker Engine: the stand-in images (images/) and the rendered compose project.

`engine` starts the private engine (scripts/docker-engine.sh) and builds the images (scripts/build-images.py) once
per session, and stops the engine afterwards if it started it. `project` renders the current compose project with
host ports moved to 3xxxx (so it never meets a stack on the default ports) and places its locked jars, as
`sagaz-lakehouse up --target compose` does. Nothing here is skipped: an engine or image that cannot start fails the
test with its output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from sagaz_lakehouse import config, render
from sagaz_lakehouse.config import Settings
from sagaz_lakehouse.drivers.compose import SHADOWING_VARS, ComposeDriver

REPO = Path(__file__).resolve().parents[2]
ENGINE = REPO / "scripts" / "docker-engine.sh"
BUILD = REPO / "scripts" / "build-images.py"
PROJECT = "sagaz-containers-test"
PORTS = {"zookeeper": 32181, "fluss_coordinator": 39123, "fluss_tablet": 39124, "minio": 39000, "minio_console": 39001,
         "rest_catalog": 38181, "flink_rest": 38081, "flink_rpc": 36123, "trino": 38080}
OVERRIDES = {"target": "compose", "project": PROJECT, **{f"ports.{k}": str(v) for k, v in PORTS.items()}}
LOG_TAIL = 60


def env() -> dict[str, str]:
    """The caller's environment minus credential variables compose would prefer over the project's .env."""
    return {k: v for k, v in os.environ.items() if k not in SHADOWING_VARS}


def run(args: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env(), check=False, **kwargs)


def must(result: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    if result.returncode != 0:
        pytest.fail(f"`{what}` exited {result.returncode}\n--- stdout ---\n{result.stdout[-4000:]}\n"
                    f"--- stderr ---\n{result.stderr[-4000:]}", pytrace=False)
    return result


@pytest.fixture(scope="session")
def engine() -> Iterator[None]:
    was_running = run(["bash", str(ENGINE), "status"]).returncode == 0
    must(run(["bash", str(ENGINE), "start"], timeout=1800), "scripts/docker-engine.sh start")
    try:
        must(run([sys.executable, str(BUILD)], timeout=3600), "scripts/build-images.py")
        yield
    finally:
        if not was_running:
            run(["bash", str(ENGINE), "stop"], timeout=300)


@dataclass
class Project:
    settings: Settings
    directory: Path

    @property
    def document(self) -> dict:
        return yaml.safe_load((self.directory / "compose.yaml").read_text())

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return run(["docker", "compose", "-p", PROJECT, "--project-directory", str(self.directory),
                    "-f", str(self.directory / "compose.yaml"), *args], timeout=timeout)

    def diagnosis(self, service: str) -> str:
        """State, health log and log tail of a service, for a failure message."""
        ps = self.compose("ps", "-a", "--format", "{{.Service}} {{.State}} {{.Status}}").stdout
        ids = self.compose("ps", "-a", "-q", service).stdout.split()
        health = run(["docker", "inspect", "--format", "{{json .State.Health}}", *ids]).stdout[-2000:] if ids else ""
        logs = self.compose("logs", "--no-color", "--tail", str(LOG_TAIL), service).stdout
        return (f"--- compose ps ---\n{ps}\n--- health of {service} ---\n{health}\n"
                f"--- last {LOG_TAIL} log lines ---\n{logs}")


@pytest.fixture(scope="module")
def project(engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    base = tmp_path_factory.mktemp("compose-project")
    settings = config.load(None, OVERRIDES, environ={})
    driver = ComposeDriver(settings, base, log=lambda _message: None)
    render.write_files(render.render(settings, driver.credentials(), "compose"), driver.project_dir)
    driver.materialize_jars()
    made = Project(settings, driver.project_dir)
    made.compose("down", "--volumes", "--remove-orphans")  # leftovers of an interrupted earlier run
    yield made
    made.compose("down", "--volumes", "--remove-orphans", timeout=300)
