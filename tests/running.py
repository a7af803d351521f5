"""One running stack, driven as a user drives it: a folder of its own (the settings file, the run folder), the CLI
run there, and the settings, credentials and endpoints its clients see. Every suite and benchmark that runs a stack
builds on :class:`RunningStack` and adds only what it alone looks at (containers, pods, pids, Prometheus).

Importable as ``running`` (tests/ is on sys.path through its conftest; bench/ puts it there). Nothing here needs
pytest: a suite turns a failed command into a test failure by overriding :meth:`RunningStack.fail`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any, NoReturn

import sagaz_lakehouse as lakehouse
from sagaz_lakehouse.config import CONFIG_FILENAME

CLI = [sys.executable, "-m", "sagaz_lakehouse"]
CREDENTIAL_VARIABLES = ("SAGAZ_LAKEHOUSE_S3_",)  # the caller's credentials never reach a stack under test


class CommandFailed(RuntimeError):
    """A command of the stack exited non-zero; the message carries its output and the stack's diagnosis."""


class RunningStack:
    """A stack in ``workdir``. ``overrides`` are settings given on every command line (``--set KEY=VALUE``) besides
    the settings file there; ``hidden`` names environment variables (or their prefixes) its commands do not see."""

    command_timeout = 900.0  # seconds a command may take unless told otherwise

    def __init__(self, workdir: Path, overrides: dict[str, str] | None = None,
                 hidden: Iterable[str] = CREDENTIAL_VARIABLES) -> None:
        self.workdir = workdir
        self.overrides = dict(overrides or {})
        self.hidden = tuple(hidden)

    # ------------------------------------------------------------------------------------------ what it is

    @property
    def settings_file(self) -> Path:
        return self.workdir / CONFIG_FILENAME

    @cached_property
    def settings(self) -> lakehouse.Settings:
        """The settings its commands run with (the file, then the overrides; not the caller's environment), as
        they were when first asked."""
        file = self.settings_file if self.settings_file.exists() else None
        return lakehouse.load_settings(file, self.overrides, environ={})

    @cached_property
    def credentials(self) -> lakehouse.Credentials:
        return lakehouse.resolve_credentials(self.settings, environ={}, base_dir=self.workdir)

    @property
    def run_dir(self) -> Path:
        return self.workdir / self.settings.local.run_dir

    @property
    def database(self) -> str:
        return self.settings.lake.database

    @property
    def endpoints(self) -> lakehouse.Endpoints:
        """The stack as the CLI's clients see it from this host, with the Fluss and Trino logins where the profile
        asks for them: the target's own client_endpoints (loopback, where the local target binds and compose
        publishes; on Kubernetes they need port-forwards: use the driver's client_endpoints block instead)."""
        settings = self.settings
        target = lakehouse.target_of(settings)
        if target.name == "kubernetes":  # pods are reached through port-forwards only
            raise RuntimeError("open the driver's client_endpoints() block to reach a Kubernetes stack")
        with target.driver(settings, self.workdir).client_endpoints() as endpoints:
            return endpoints

    # ------------------------------------------------------------------------------------------ the CLI

    def environment(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items() if not k.startswith(self.hidden)}

    def cli(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """``sagaz-lakehouse ARGS`` in the stack's folder, with its overrides."""
        flags = [arg for key, value in self.overrides.items() for arg in ("--set", f"{key}={value}")]
        return subprocess.run([*CLI, *args, *flags], cwd=self.workdir, env=self.environment(), capture_output=True,
                              text=True, timeout=timeout or self.command_timeout, check=False)

    def must(self, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """``cli``, failing with both output streams and the stack's diagnosis unless the command succeeded."""
        result = self.cli(*args, timeout=timeout)
        if result.returncode != 0:
            self.fail(f"`sagaz-lakehouse {' '.join(args)}` exited {result.returncode}\n--- stdout ---\n"
                      f"{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-6000:]}\n{self.diagnosis(*args)}")
        return result

    def fail(self, message: str) -> NoReturn:
        raise CommandFailed(message)

    def diagnosis(self, *args: str) -> str:
        """What a failure of the command ``args`` adds about the stack itself (a suite's own evidence: container
        states, pods, log tails)."""
        return ""

    def status(self) -> dict[str, str]:
        """Each component's state, as `status --json` reports it ({} when it does not answer)."""
        result = self.cli("status", "--json", timeout=120)
        try:
            rows: list[dict[str, Any]] = json.loads(result.stdout)
        except ValueError:
            return {}
        return {row["component"]: row["state"] for row in rows}

    def log_tails(self, *components: str, chars: int = 3000) -> str:
        """The end of each component's log (`logs`), one section each."""
        return "\n".join(f"--- {c} ---\n{self.cli('logs', c, timeout=60).stdout[-chars:]}" for c in components)

    def down(self, purge: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.cli("down", *(["--purge"] if purge else []), timeout=timeout)
