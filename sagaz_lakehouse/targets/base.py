"""What every target offers, so that the CLI, ``doctor`` and the settings loader ask a target instead of naming it.

A :class:`Target` is a record of what its package provides: how it lays the stack model out (``stack``,
``render``), the :class:`Driver` that applies it, what else it can do (:class:`Capabilities`) and which checks of
this machine it needs (``environment_checks``).
Its ``view`` is where the stack's own processes run, which is what their configuration sees: security that the
profile asks for applies to processes in that view (:mod:`sagaz_lakehouse.security`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sagaz_lakehouse.addresses import Endpoints
from sagaz_lakehouse.config import Credentials, Settings
from sagaz_lakehouse.errors import UsageError
from sagaz_lakehouse.render import RenderedFile
from sagaz_lakehouse.stack import Stack, View
from sagaz_lakehouse.targets import NAMES, REGISTRY, RESTART_TIMEOUT_S


@dataclass(frozen=True)
class Capabilities:
    """What a target can do besides up, down, status and logs."""

    diff: bool = False  # `diff`: what `up` would change, compared with what runs
    force_conflicts: bool = False  # `up --force-conflicts`: take over fields another manager owns
    # `up --restart-changed`: restart what runs with an older configuration (compose and Kubernetes always apply it)
    restart_changed: bool = False
    # `status` shows the tiering lag: Prometheus answers on the host without a port-forward being opened
    status_tiering_lag: bool = False
    # `status` judges the lake (Fluss and the catalog) itself: the host reaches them without opening anything
    status_lake_health: bool = False
    # `status` shows the Iceberg table's shape: the host reaches the REST catalog without a port-forward
    status_lake_shape: bool = False


class Driver(Protocol):
    """Applies a rendered stack somewhere and reports on it: the same verbs on every target."""

    def up(self, *, dry_run: bool, wait: bool, timeout: int) -> dict[str, Any]: ...

    def down(self, *, purge: bool) -> None: ...

    def status(self) -> list[dict[str, Any]]: ...

    def logs(self, component: str, lines: int) -> str: ...

    def restart(self, component: str, timeout: int = RESTART_TIMEOUT_S) -> None:
        """Stop every instance of ``component`` and start it again; return once it is healthy."""
        ...

    def client_endpoints(self) -> AbstractContextManager[Endpoints]:
        """Endpoints reachable from this host for the duration of the block (port-forwards on Kubernetes)."""
        ...


Probe = Callable[[], str]  # returns what it found; raises what is wrong


def no_checks(settings: Settings) -> dict[str, Probe]:
    return {}


@dataclass(frozen=True)
class Target:
    """One place to run the stack, as its package (``targets/<name>/``) describes it."""

    name: str
    view: View  # where the stack's processes run: inside containers (INTERNAL) or on this host (EXTERNAL)
    capabilities: Capabilities
    stack: Callable[[Settings], Stack]  # the model as this target lays it out: every instance, its name, its ports
    render: Callable[[Settings, Credentials], list[RenderedFile]]  # every file of the stack, in memory
    driver: Callable[[Settings, Path], Driver]  # applies it; the path is where relative settings paths start
    environment_checks: Callable[[Settings], dict[str, Probe]] = no_checks  # doctor's checks of this machine


# ------------------------------------------------------------------------------------------ the registry


def get_target(name: str) -> Target:
    """The target called ``name``; an unknown name is a usage error (exit 2) listing the known ones."""
    if name not in REGISTRY:
        raise UsageError(f"--target: unknown target '{name}'", f"use one of: {', '.join(NAMES)}")
    target: Target = importlib.import_module(REGISTRY[name]).TARGET
    return target


def target_of(settings: Settings) -> Target:
    """The target the settings name."""
    return get_target(settings.target)


def able_to(capability: str) -> list[str]:
    """The names of the targets that have ``capability`` (a field of Capabilities), for messages that say where a
    flag or command applies."""
    return [name for name in NAMES if getattr(get_target(name).capabilities, capability)]


def render(settings: Settings, credentials: Credentials, target: str | None = None) -> list[RenderedFile]:
    """Every file of ``target`` (default: the settings' own target), in memory."""
    return get_target(target or settings.target).render(settings, credentials)

