"""Helpers shared by the test suites (importable as `support`: tests/ is on sys.path via its conftest)."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "sagaz_lakehouse"]


def cache_dir() -> Path:
    """The download/build cache shared with `make tools` (outside the clone)."""
    return Path(os.environ.get("SAGAZ_LAKEHOUSE_LOCAL__CACHE_DIR", "~/.cache/sagaz-lakehouse")).expanduser()


def tool(name: str) -> Path:
    """A binary installed by `make tools`; a missing one fails the test (never a silent skip)."""
    path = cache_dir() / "bin" / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make tools` (scripts/install-tools.sh) first", pytrace=False)
    return path


def cli(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """The real command line, in ``workdir``, without credential variables from the caller's environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGAZ_LAKEHOUSE_S3_")}
    return subprocess.run([*CLI, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)


def must(result: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    """Fail the test with both output streams unless the command succeeded."""
    if result.returncode != 0:
        pytest.fail(f"`{what}` exited {result.returncode}\n--- stdout ---\n{result.stdout[-4000:]}\n"
                    f"--- stderr ---\n{result.stderr[-6000:]}", pytrace=False)
    return result


def init_with_ports(workdir: Path, ports: dict[str, int]) -> Path:
    """`init` in ``workdir``, then move the stack to ``ports`` so suites never collide; returns the settings file."""
    import yaml

    missing = sorted(set(port_names()) - set(ports))
    if missing:  # a port left at its default would meet the same default of a stack running beside this one
        pytest.fail(f"the suite's ports miss {missing}: use support.shifted_ports", pytrace=False)

    from sagaz_lakehouse import config

    must(cli(workdir, "init"), "init")
    settings_file = workdir / config.CONFIG_FILENAME
    values = yaml.safe_load(settings_file.read_text()) or {}  # init writes every default commented out
    values["ports"] = {**values.get("ports", {}), **ports}
    settings_file.write_text(yaml.safe_dump(values))
    return settings_file


def port_names() -> list[str]:
    """Every port setting of the stack (config.Ports), so a new port is covered by every helper below."""
    from sagaz_lakehouse import config

    return [f.name for f in dataclasses.fields(config.Ports)]


def free_ports(count: int) -> list[int]:
    """Distinct ports nobody listens on now: every socket stays bound until all are chosen, so none repeats."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port_settings() -> dict[str, int]:
    """Every port of the stack on a free one. Tests that reach `up`'s port check use these: the defaults may be held
    by a stack of another suite running beside them, or by the user's own `make up`."""
    names = port_names()
    return dict(zip(names, free_ports(len(names)), strict=True))


def shifted_ports(base: int) -> dict[str, int]:
    """Every port of the stack at ``base`` + (default % 10000), e.g. 50000 -> 52181, 59123, ...: each suite's stack
    gets a range of its own and never meets another suite's, nor a stack on the defaults."""
    from sagaz_lakehouse import config

    return {f.name: base + f.default % 10000 for f in dataclasses.fields(config.Ports)}
