"""The local target: the stack as native processes on loopback.

- ``layout``: the stack model as processes and their files under one run folder
- ``driver``: ``up`` (preflight, installs, configuration, start in dependency order), ``down``, ``status``, ``logs``
- ``supervisor``: pid files, health probes, dependency order; ``watchdog``: restarts with backoff
- ``distributions``: the software, installed from verified downloads (MinIO and Prometheus built with Go);
  ``jdk``: finding a JDK
"""

from __future__ import annotations

from sagaz_lakehouse.stack import View
from sagaz_lakehouse.targets.base import Capabilities, Target
from sagaz_lakehouse.targets.local import driver, jdk, layout

# The processes run on this host and see each other on loopback, so `status` reads Prometheus and the lake directly.
TARGET = Target("local", View.EXTERNAL, Capabilities(status_tiering_lag=True, status_lake_health=True,
                                                          status_lake_shape=True, restart_changed=True),
                stack=layout.local_stack, render=layout.files, driver=driver.LocalDriver,
                environment_checks=jdk.environment_checks)
