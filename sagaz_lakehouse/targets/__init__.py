"""Targets: where the stack runs. Each target is one package that lays the stack model out (``layout``), applies
it (``driver``) and holds whatever runtime it needs; none of them describes a component itself.

- ``local``: native processes on loopback under a supervisor and a watchdog, their files under a run folder
- ``compose``: one compose project (compose.yaml, mounted files, a 0600 .env) run by a container engine
- ``kubernetes``: plain manifests that ``kubectl apply -k`` accepts, applied server-side through the API server

``REGISTRY`` is the one list of targets: a name and the package that implements
:class:`~sagaz_lakehouse.targets.base.Target` there (its ``TARGET``). A package is imported only when its target is
asked for, so rendering one target never loads the others, and this module imports nothing of the package: the
settings schema lists its names.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from sagaz_lakehouse.errors import UsageError

if TYPE_CHECKING:
    from sagaz_lakehouse.config import Credentials, Settings
    from sagaz_lakehouse.render import RenderedFile
    from sagaz_lakehouse.targets.base import Target

REGISTRY = {
    "local": "sagaz_lakehouse.targets.local",
    "compose": "sagaz_lakehouse.targets.compose",
    "kubernetes": "sagaz_lakehouse.targets.kubernetes",
}
NAMES = tuple(REGISTRY)


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

