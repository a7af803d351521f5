"""Per-target rendering: which templates make up each target and what data they get.

Each target module exposes ``files(settings, credentials) -> list[RenderedFile]``. They are imported on demand so
rendering one target never loads the others.
"""

from __future__ import annotations

from sagaz_lakehouse.config import Credentials, Settings
from sagaz_lakehouse.render import RenderedFile


def compose_files(settings: Settings, credentials: Credentials) -> list[RenderedFile]:
    from sagaz_lakehouse.targets import compose

    return compose.files(settings, credentials)


def kubernetes_files(settings: Settings, credentials: Credentials) -> list[RenderedFile]:
    from sagaz_lakehouse.targets import kubernetes

    return kubernetes.files(settings, credentials)


def local_files(settings: Settings, credentials: Credentials) -> list[RenderedFile]:
    from sagaz_lakehouse.targets import local

    return local.files(settings, credentials)
