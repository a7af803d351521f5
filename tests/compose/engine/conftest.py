"""Container tests on a real Docker Engine: the stand-in images (images/) and the compose target run through the
CLI exactly as a user runs it.

`engine` starts the private engine (scripts/docker-engine.sh) and builds the images (scripts/build-images.py) once
per session; both are no-ops when `make test` already did it. It stops the engine afterwards only if it started it.
Every stack here publishes on the compose suite's own ports (support.suite_ports) under a project name of its own,
so it never meets a stack on the default ports. Nothing is skipped: an engine, image or service that cannot start
fails the test with its output and the log tails of what is not healthy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import REPO, SuiteStack, suite_ports

from sagaz_lakehouse.targets.compose.driver import SHADOWING_VARS

ENGINE = REPO / "scripts" / "docker-engine.sh"
BUILD = REPO / "scripts" / "build-images.py"
PORTS = suite_ports("compose")
LOG_TAIL = 40
COMPOSE_LABEL = "com.docker.compose.project"
PROJECT_PREFIX = "sagaz-ct-"  # every project of this suite is named so


def env() -> dict[str, str]:
    """The caller's environment minus credential variables compose (and the CLI) would prefer over the defaults."""
    return {k: v for k, v in os.environ.items()
            if k not in SHADOWING_VARS and not k.startswith("SAGAZ_LAKEHOUSE_S3_")}


def run(args: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env(), check=False, **kwargs)


def must(result: subprocess.CompletedProcess[str], what: str, context: str = "") -> subprocess.CompletedProcess[str]:
    if result.returncode != 0:
        pytest.fail(f"`{what}` exited {result.returncode}\n--- stdout ---\n{result.stdout[-4000:]}\n"
                    f"--- stderr ---\n{result.stderr[-6000:]}" + (f"\n{context}" if context else ""), pytrace=False)
    return result


@pytest.fixture(scope="session")
def engine() -> Iterator[None]:
    was_running = run(["bash", str(ENGINE), "status"]).returncode == 0
    must(run(["bash", str(ENGINE), "start"], timeout=1800), "scripts/docker-engine.sh start")
    try:
        remove_leftover_projects()
        must(run([sys.executable, str(BUILD)], timeout=3600), "scripts/build-images.py")
        yield
    finally:
        if not was_running:
            run(["bash", str(ENGINE), "stop"], timeout=300)


def remove_leftover_projects() -> None:
    """Containers, volumes and networks of this suite's projects (sagaz-ct-*) left by an earlier run whose teardown
    never ran: their restart policy brings them back with the engine, still publishing this suite's ports (a CI run
    failed on exactly that: `port ... (published by service 'minio') is already in use`)."""
    for kind, listing, remove in (("container", ["docker", "ps", "-a"], ["docker", "rm", "-f", "-v"]),
                                  ("volume", ["docker", "volume", "ls"], ["docker", "volume", "rm", "-f"]),
                                  ("network", ["docker", "network", "ls"], ["docker", "network", "rm"])):
        field = "{{.ID}}" if kind != "volume" else "{{.Name}}"
        rows = must(run([*listing, "--format", f'{field} {{{{.Label "{COMPOSE_LABEL}"}}}}']), f"docker {kind} ls")
        labelled = (row.split() for row in rows.stdout.splitlines())
        leftovers = [fields[0] for fields in labelled if len(fields) == 2 and fields[1].startswith(PROJECT_PREFIX)]
        if leftovers:
            must(run([*remove, *leftovers]), f"removing leftover {kind}s of an earlier run: {' '.join(leftovers)}")


def bridge_gateway() -> str:
    """The engine's default bridge address: the host's own, and routed from every container network. A server the
    test runs on the host for the containers (an external catalog, an external object store) binds it, so the
    containers and the host reach it at one address, as the README asks of the real thing."""
    out = must(run(["docker", "network", "inspect", "bridge"]), "docker network inspect bridge").stdout
    return json.loads(out)[0]["IPAM"]["Config"][0]["Gateway"]


class Stack(SuiteStack):
    """A compose stack driven through the CLI (`sagaz-lakehouse ... --set target=compose`) from its own folder."""

    command_timeout = 1200.0

    def __init__(self, workdir: Path, project: str, overrides: dict[str, str] | None = None,
                 ports: dict[str, int] | None = None) -> None:
        assert project.startswith(PROJECT_PREFIX), f"{project}: the engine fixture removes leftovers by this prefix"
        super().__init__(workdir, {"target": "compose", "project": project, **(overrides or {}),
                                   **{f"ports.{key}": str(value) for key, value in (ports or PORTS).items()}},
                         hidden=(*SHADOWING_VARS, "SAGAZ_LAKEHOUSE_S3_"))
        self.project = project

    def containers(self) -> list[dict]:
        """`docker inspect` of every container of the project (running or not)."""
        ids = run(["docker", "ps", "-aq", "--filter", f"label={COMPOSE_LABEL}={self.project}"]).stdout.split()
        return json.loads(must(run(["docker", "inspect", *ids]), "docker inspect").stdout) if ids else []

    def services(self) -> set[str]:
        """The compose services the project has containers of."""
        return {c["Config"]["Labels"]["com.docker.compose.service"] for c in self.containers()}

    def tables_and_doctor(self) -> dict[str, dict]:
        """`create-tables`, then `doctor --json`, which must pass with its probe event (Fluss → tiering → Iceberg →
        Trino); returns the doctor's checks by name."""
        self.must("create-tables")
        report = json.loads(self.must("doctor", "--json").stdout)
        checks = {c["name"]: c for c in report["checks"]}
        assert report["ok"] is True and checks["probe event Fluss → Iceberg → Trino"]["status"] == "pass", report
        return checks

    def volumes(self) -> list[str]:
        return sorted(run(["docker", "volume", "ls", "-q", "--filter",
                           f"label={COMPOSE_LABEL}={self.project}"]).stdout.split())

    def networks(self) -> list[str]:
        labelled = f"label={COMPOSE_LABEL}={self.project}"
        return run(["docker", "network", "ls", "-q", "--filter", labelled]).stdout.split()

    def diagnosis(self, *args: str) -> str:
        """State and health of every container, and the log tail of each that is not healthy or done."""
        lines, tails = [], []
        for c in self.containers():
            name, state = c["Name"].lstrip("/"), c["State"]
            health = (state.get("Health") or {}).get("Status", "-")
            lines.append(f"{name}: {state['Status']} (exit {state['ExitCode']}), health {health}")
            if health not in ("healthy", "-") or (state["Status"] != "running" and state["ExitCode"] != 0):
                log = run(["docker", "logs", "--tail", str(LOG_TAIL), c["Id"]])
                tails.append(f"--- last {LOG_TAIL} log lines of {name} ---\n{log.stdout}{log.stderr}")
        if args and args[0] in ("create-tables", "doctor"):  # the tiering path's own logs, healthy or not
            tails += self.tiering_logs()
        return "--- containers ---\n" + "\n".join(lines or ["(none)"]) + "\n" + "\n".join(tails)

    def tiering_logs(self, lines: int = 60) -> list[str]:
        """The last log lines of the servers on the tiering path (Fluss, Flink): where a stalled tiering shows why."""
        wanted = ("fluss-coordinator", "fluss-tablet-0", "flink-jobmanager", "flink-taskmanager-0")
        out = []
        for c in self.containers():
            service = c["Config"]["Labels"].get("com.docker.compose.service", "")
            if service in wanted:
                log = run(["docker", "logs", "--tail", "2000", c["Id"]])
                text = (log.stdout + log.stderr).splitlines()
                # the warnings and errors of the whole tail (a stall's cause is rarely in its last lines), then the end
                flagged = [line for line in text if any(w in line for w in ("WARN", "ERROR", "Exception", "Caused by"))]
                out.append(f"--- {service}: warnings and errors ---\n" + "\n".join(flagged[-40:])[-6000:]
                           + f"\n--- last {lines} log lines of {service} ---\n" + "\n".join(text[-lines:])[-6000:])
        return out

    def purge(self) -> None:
        self.down(purge=True)
