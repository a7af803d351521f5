"""sagaz-lakehouse: stand up a streaming lakehouse (Fluss → Iceberg, Flink tiering, Trino) for saga analytics.

The command line (``sagaz-lakehouse``) is one way in; this is the other, for programs, tests and benchmarks::

    import sagaz_lakehouse as lakehouse

    settings = lakehouse.load_settings()              # ./sagaz-lakehouse.yaml or None, SAGAZ_LAKEHOUSE_*, overrides
    credentials = lakehouse.resolve_credentials(settings)
    target = lakehouse.target_of(settings)            # the Target: local, compose or kubernetes
    stack = target.stack(settings)                    # the stack model as that target lays it out
    driver = target.driver(settings, base_dir)        # up, down, status, logs, client_endpoints()
    with driver.client_endpoints() as endpoints:      # addresses as seen from this host (Endpoints)
        ...
    listener = lakehouse.FlussAnalyticsListener()     # Sagaz saga events into Fluss (the ``sagaz`` extra)

Public names, each documented where it lives:

- settings: ``load_settings`` (every problem at once, ConfigError), ``resolve_credentials``, ``Settings``,
  ``Credentials``, ``find_config_file``, ``duration_seconds``
- the stack model: ``build_stack`` (every component for a :class:`View`), ``Stack``, ``Component``, ``View``
- targets: ``get_target`` (by name), ``target_of`` (the settings' target), ``TARGET_NAMES``, ``Target``,
  ``Capabilities``, ``Endpoints``
- Sagaz: ``FlussAnalyticsListener``
- errors: ``LakehouseError`` (message, hint, exit code), ``ConfigError``, ``UsageError``

Each is imported when first used, so ``import sagaz_lakehouse`` and ``sagaz-lakehouse --help`` stay instant.
Modules keep their own documented (non-underscore) names for what is finer than this.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sagaz_lakehouse.version import __version__

# Every public name and the module that defines it (imported on first use).
EXPORTS = {
    "load_settings": "sagaz_lakehouse.loader",
    "resolve_credentials": "sagaz_lakehouse.loader",
    "Settings": "sagaz_lakehouse.config",
    "Credentials": "sagaz_lakehouse.config",
    "find_config_file": "sagaz_lakehouse.config",
    "duration_seconds": "sagaz_lakehouse.config",
    "build_stack": "sagaz_lakehouse.components",
    "Stack": "sagaz_lakehouse.stack",
    "Component": "sagaz_lakehouse.stack",
    "View": "sagaz_lakehouse.stack",
    "get_target": "sagaz_lakehouse.targets.base",
    "target_of": "sagaz_lakehouse.targets.base",
    "TARGET_NAMES": "sagaz_lakehouse.targets",
    "Target": "sagaz_lakehouse.targets.base",
    "Capabilities": "sagaz_lakehouse.targets.base",
    "Endpoints": "sagaz_lakehouse.addresses",
    "FlussAnalyticsListener": "sagaz_lakehouse.sagaz",
    "LakehouseError": "sagaz_lakehouse.errors",
    "ConfigError": "sagaz_lakehouse.errors",
    "UsageError": "sagaz_lakehouse.errors",
}
_RENAMED = {"TARGET_NAMES": "NAMES"}  # a public name that its module spells otherwise

__all__ = [
    "TARGET_NAMES",
    "Capabilities",
    "Component",
    "ConfigError",
    "Credentials",
    "Endpoints",
    "FlussAnalyticsListener",
    "LakehouseError",
    "Settings",
    "Stack",
    "Target",
    "UsageError",
    "View",
    "__version__",
    "build_stack",
    "duration_seconds",
    "find_config_file",
    "get_target",
    "load_settings",
    "resolve_credentials",
    "target_of",
]  # the same names as EXPORTS (a unit test holds them together)

if TYPE_CHECKING:  # what type checkers see; at run time each is imported on first use
    from sagaz_lakehouse.addresses import Endpoints
    from sagaz_lakehouse.components import build_stack
    from sagaz_lakehouse.config import Credentials, Settings, duration_seconds, find_config_file
    from sagaz_lakehouse.errors import ConfigError, LakehouseError, UsageError
    from sagaz_lakehouse.loader import load_settings, resolve_credentials
    from sagaz_lakehouse.sagaz import FlussAnalyticsListener
    from sagaz_lakehouse.stack import Component, Stack, View
    from sagaz_lakehouse.targets import NAMES as TARGET_NAMES
    from sagaz_lakehouse.targets.base import Capabilities, Target, get_target, target_of


def __getattr__(name: str) -> Any:
    module = EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sagaz_lakehouse' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), _RENAMED.get(name, name))
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *EXPORTS})
