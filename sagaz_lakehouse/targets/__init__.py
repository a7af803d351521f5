"""Targets: the stack model laid out for one place to run it. Each module translates the same components;
none of them describes a component itself.

- ``local``: native processes and their files under a run folder
- ``compose``: one compose project (compose.yaml, mounted files, a 0600 .env)
- ``kubernetes``: plain manifests that ``kubectl apply -k`` accepts

Each is imported on demand, so rendering one target never loads the others.
"""

from __future__ import annotations

from sagaz_lakehouse.config import TARGETS, Credentials, Settings
from sagaz_lakehouse.errors import UsageError
from sagaz_lakehouse.render import RenderedFile


def render(settings: Settings, credentials: Credentials, target: str | None = None) -> list[RenderedFile]:
    """Every file of ``target`` (default: the settings' own target), in memory."""
    target = target or settings.target
    if target == "local":
        from sagaz_lakehouse.targets import local

        return local.files(settings, credentials)
    if target == "compose":
        from sagaz_lakehouse.targets import compose

        return compose.files(settings, credentials)
    if target == "kubernetes":
        from sagaz_lakehouse.targets import kubernetes

        return kubernetes.files(settings, credentials)
    raise UsageError(f"--target: unknown target '{target}'", f"use one of: {', '.join(TARGETS)}")
