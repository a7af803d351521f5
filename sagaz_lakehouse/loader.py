"""Settings as the whole package sees them: the schema's validation (:mod:`sagaz_lakehouse.config`) plus the stack
model's, and credentials as the chosen target needs them.

``config`` is the bottom of the package: it knows the fields, where their values come from and what each accepts,
but not how the stack is laid out. The host ports are worked out by the stack model (every instance, every port,
tablet *i* on its setting + *i*), so the checks that need them live here, above the model, and reach
``config.load`` as ``checks``: every problem is still reported at once, each naming its field, where the value came
from and a fix.
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

from sagaz_lakehouse import config, security
from sagaz_lakehouse.components import fluss
from sagaz_lakehouse.config import Credentials, Settings
from sagaz_lakehouse.errors import Problem
from sagaz_lakehouse.stack import HostPort, Stack
from sagaz_lakehouse.targets import NAMES as TARGET_NAMES
from sagaz_lakehouse.targets.base import target_of

SETTING_ORDER = {f.name: i for i, f in enumerate(dataclasses.fields(config.Ports))}


def load_settings(path: Path | None = None, overrides: dict[str, Any] | None = None,
                  environ: dict[str, str] | None = None) -> Settings:
    """Read, merge and validate settings (``config.load``) with the target's and the stack model's checks; raises
    ConfigError listing every problem at once."""
    return config.load(path, overrides, environ, checks=(target_problems, model_problems))


def target_problems(settings: Settings) -> list[Problem]:
    """The target must be one the registry (targets/__init__.py) names."""
    if settings.target in TARGET_NAMES:
        return []
    close = difflib.get_close_matches(settings.target, TARGET_NAMES, n=1)
    return [Problem("target", f"expected one of {', '.join(TARGET_NAMES)}, got '{settings.target}'",
                    f"did you mean '{close[0]}'?" if close else f"use one of: {', '.join(TARGET_NAMES)}")]


def model_problems(settings: Settings) -> list[Problem]:
    """What the stack laid out for these settings would trip over: two instances on one host port, a Fluss server
    whose listeners share a port."""
    if settings.target not in TARGET_NAMES:  # target_problems names it; the rest is checked as a field in error
        settings = dataclasses.replace(settings, target=Settings().target)  # is: at its default
    stack = target_of(settings).stack(settings)
    return [*port_collisions(stack), *fluss.listener_problems(stack)]


def port_collisions(stack: Stack) -> list[Problem]:
    """Every host port taken twice, blamed on the later owner: ports no setting moves first, then settings in the
    schema's order, those that fan out to instances (tablet servers, TaskManagers) after the others."""
    owners: dict[int, str] = {}
    problems = []
    for entry in sorted(stack.host_ports(), key=_settings_order):
        if entry.number in owners:
            problems.append(Problem(f"ports.{entry.owner}", f"port {entry.number} is also used by "
                                    f"{owners[entry.number]}", f"give ports.{entry.owner} a free port"))
        else:
            owners[entry.number] = entry.owner
    return problems


def _settings_order(entry: HostPort) -> tuple[bool, bool, int, int]:
    return bool(entry.port.setting), entry.port.per_instance, SETTING_ORDER.get(entry.port.setting, -1), entry.fan_out


def resolve_credentials(settings: Settings, environ: dict[str, str] | None = None,
                        base_dir: Path | None = None) -> Credentials:
    """Credentials from the environment or the secrets file (``config.resolve_credentials``), with the Fluss and
    Trino passwords where the target's stack authenticates those clients."""
    return security.resolve_credentials(settings, target_of(settings).view, environ, base_dir)
