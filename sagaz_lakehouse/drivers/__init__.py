"""Target drivers: they apply a rendered stack somewhere and report on it.

Every driver offers the same verbs, so the CLI never branches on the target.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

from sagaz_lakehouse.addresses import Endpoints
from sagaz_lakehouse.config import Settings


class Driver(Protocol):
    def up(self, *, dry_run: bool, wait: bool, timeout: int) -> dict[str, Any]: ...

    def down(self, *, purge: bool) -> None: ...

    def status(self) -> list[dict[str, Any]]: ...

    def logs(self, component: str, lines: int) -> str: ...

    def client_endpoints(self) -> AbstractContextManager[Endpoints]:
        """Endpoints reachable from this host for the duration of the block (port-forwards on Kubernetes)."""
        ...


def driver_for(settings: Settings, base_dir: Path) -> Driver:
    if settings.target == "local":
        from sagaz_lakehouse.drivers.local import LocalDriver

        return LocalDriver(settings, base_dir)
    if settings.target == "compose":
        from sagaz_lakehouse.drivers.compose import ComposeDriver

        return ComposeDriver(settings, base_dir)
    from sagaz_lakehouse.drivers.kubernetes import KubernetesDriver

    return KubernetesDriver(settings, base_dir)
