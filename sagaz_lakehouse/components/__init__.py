"""Every component of the stack, described once: one module per piece of software.

``REGISTRY`` lists them in dependency order (a new component is its module and one line there); ``build_stack``
gives them for settings and a view, Prometheus last; each target lays out exactly this list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sagaz_lakehouse import stack as s
from sagaz_lakehouse.components import (
    catalog,
    catalog_db,
    flink,
    fluss,
    maintenance,
    object_store,
    tasks,
    trino,
    zookeeper,
)
from sagaz_lakehouse.config import Settings

if TYPE_CHECKING:
    from sagaz_lakehouse.components.prometheus import Addressing

# A component for the settings, configured for processes that see the view; None where the settings leave it out.
Factory = Callable[[Settings, s.View], s.Component | None]

# Every component, in dependency order: adding one is its module and a line here.
REGISTRY: tuple[Factory, ...] = (
    zookeeper.zookeeper,
    object_store.minio,
    tasks.create_bucket,
    catalog_db.catalog_db,
    catalog.rest_catalog,
    fluss.coordinator,
    fluss.tablet,
    flink.jobmanager,
    flink.taskmanager,
    flink.sql_gateway,
    tasks.submit_tiering,
    trino.coordinator,
    trino.worker,
    maintenance.lake_maintenance,
)


def build_stack(settings: Settings, view: s.View, address: Addressing | None = None) -> s.Stack:
    """Every component for these settings, in dependency order, configured for processes that see ``view``.
    ``address`` names an instance inside the stack (for Prometheus' targets; default: compose's service names)."""
    return s.Stack(settings, view, all_components(settings, view, address))


def all_components(settings: Settings, view: s.View, address: Addressing | None = None) -> tuple[s.Component, ...]:
    from sagaz_lakehouse.components import prometheus

    components = [c for factory in REGISTRY if (c := factory(settings, view)) is not None]
    # Prometheus comes last: it scrapes every component above it.
    components.append(prometheus.prometheus(settings, view, components, address or prometheus.compose_address))
    return tuple(components)
