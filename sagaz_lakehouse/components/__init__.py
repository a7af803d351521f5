"""Every component of the stack, described once: one module per piece of software.

``build_stack`` lists them in dependency order; each target lays out exactly this list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sagaz_lakehouse import stack as s
from sagaz_lakehouse.config import Settings

if TYPE_CHECKING:
    from sagaz_lakehouse.components.prometheus import Addressing


def build_stack(settings: Settings, view: s.View, address: Addressing | None = None) -> s.Stack:
    """Every component for these settings, in dependency order, configured for processes that see ``view``.
    ``address`` names an instance inside the stack (for Prometheus' targets; default: compose's service names)."""
    return s.Stack(settings, view, all_components(settings, view, address))


def all_components(settings: Settings, view: s.View, address: Addressing | None = None) -> tuple[s.Component, ...]:
    from sagaz_lakehouse.components import catalog, flink, fluss, object_store, prometheus, tasks, trino, zookeeper

    components = [
        zookeeper.zookeeper(settings, view),
        object_store.minio(settings, view),
        tasks.create_bucket(settings, view),
        catalog.rest_catalog(settings, view),
        fluss.coordinator(settings, view),
        fluss.tablet(settings, view),
        flink.jobmanager(settings, view),
        flink.taskmanager(settings, view),
        flink.sql_gateway(settings, view),
        tasks.submit_tiering(settings, view),
        trino.coordinator(settings, view),
    ]
    if settings.replicas.trino_workers:
        components.append(trino.worker(settings, view))
    components.append(prometheus.prometheus(settings, view, components, address or prometheus.compose_address))
    return tuple(components)
